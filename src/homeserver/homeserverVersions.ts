import { callHomeserver, homeserverFailed } from './homeserverCall.js';

/** The client-server API versions the homeserver announces; throws a MatrixError when it cannot be reached. */
export async function homeserverVersions(homeserverUrl: string, timeoutMs: number): Promise<string[]> {
  const answer = await callHomeserver({ method: 'GET', url: `${homeserverUrl}/_matrix/client/versions`, timeoutMs });
  const versions = answer.body.versions;
  if (answer.status !== 200 || !Array.isArray(versions))
    throw homeserverFailed(`GET /_matrix/client/versions answered HTTP ${answer.status}`);
  return versions.filter((version): version is string => typeof version === 'string');
}
