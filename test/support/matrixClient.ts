/** The few client-server and admin calls the end-to-end tests make as a node or an operator would. */
export interface JsonAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly headers: Headers;
}

export async function requestJson(method: string, url: string, body?: unknown, token?: string): Promise<JsonAnswer> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { nonJson: text };
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export function passwordLogin(homeserverUrl: string, user: string, password: string): Promise<JsonAnswer> {
  return requestJson('POST', `${homeserverUrl}/_matrix/client/v3/login`, {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user },
    password,
  });
}

export function profileDisplayname(homeserverUrl: string, userId: string, token: string): Promise<JsonAnswer> {
  return requestJson('GET', `${homeserverUrl}/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname`, undefined, token);
}

export function adminGetUser(homeserverUrl: string, userId: string, adminToken: string): Promise<JsonAnswer> {
  return requestJson('GET', `${homeserverUrl}/_synapse/admin/v2/users/${encodeURIComponent(userId)}`, undefined, adminToken);
}

export async function createRoomAndSay(homeserverUrl: string, token: string, text: string): Promise<string> {
  const room = await requestJson('POST', `${homeserverUrl}/_matrix/client/v3/createRoom`, { preset: 'private_chat' }, token);
  if (room.status !== 200) throw new Error(`createRoom: ${JSON.stringify(room.body)}`);
  const roomId = String(room.body.room_id);
  const sent = await requestJson(
    'PUT',
    `${homeserverUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${Date.now()}`,
    { msgtype: 'm.text', body: text },
    token,
  );
  if (sent.status !== 200) throw new Error(`send: ${JSON.stringify(sent.body)}`);
  return roomId;
}

export function invite(homeserverUrl: string, token: string, roomId: string, userId: string): Promise<JsonAnswer> {
  return requestJson('POST', `${homeserverUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: userId }, token);
}
