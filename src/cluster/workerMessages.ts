import type { NewNode } from '../homeserver/registrar.js';
import type { RefusalReport } from '../log/refusalTally.js';
import { MatrixError } from '../protocol/matrixError.js';
import { parseRegistrationRequest } from '../protocol/registrationRequest.js';
import type { RegistrationRequestInfo } from './primaryApi.js';

/**
 * What a worker sends, checked again by the primary: a worker serves the public listener, and one that is compromised
 * (or has a bug) must not make the primary store, count or call the homeserver with values of a shape no request
 * could carry. Shapes only: the signatures are the worker's to verify (twice per registration would cost the primary
 * what the workers are there to spend). The bounds are above anything a request through Node's HTTP parser (16 KiB of
 * headers) can carry, so that both modes (workers, one process) answer alike. Each check throws a 400 (the worker's
 * request fails) or returns what is safe to use.
 */

/** Longer than anything a request's line and headers can carry. */
const MAX_TEXT_LENGTH = 64 * 1024;
/** More than a worker reports in a second under any flood: the tally keeps at most a few thousand clients. */
const MAX_REPORT_ENTRIES = 10_000;

const malformed = (what: string): MatrixError => new MatrixError(400, 'M_BAD_JSON', `a worker sent a malformed ${what}`);

const isKey = (value: unknown): value is string => typeof value === 'string' && value.length <= MAX_TEXT_LENGTH;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** A registration as only a request that passed the worker's checks can be: the node's three fields, well-formed. */
export function checkedNode(node: unknown): NewNode {
  const { localpart, displayname, password } = parseRegistrationRequest(node);
  return { localpart, displayname, password };
}

export function checkedRequestInfo(info: unknown): RegistrationRequestInfo {
  const { client, address, elapsedMs, worker } = (info ?? {}) as Partial<Record<keyof RegistrationRequestInfo, unknown>>;
  if (!isKey(client) || !isKey(address) || typeof elapsedMs !== 'number' || !Number.isFinite(elapsedMs) || !isCount(worker))
    throw malformed('registration request');
  return { client, address, elapsedMs: Math.max(0, elapsedMs), worker };
}

export function checkedKey(key: unknown): string {
  if (!isKey(key)) throw malformed('client key');
  return key;
}

export function checkedString(value: unknown, what: string): string {
  if (!isKey(value)) throw malformed(what);
  return value;
}

export function checkedLocalparts(localparts: unknown): string[] {
  if (!Array.isArray(localparts) || localparts.length > MAX_REPORT_ENTRIES) throw malformed('delivery report');
  return localparts.filter(isKey);
}

const pairs = (value: unknown): [string, number][] =>
  Array.isArray(value)
    ? value
        .slice(0, MAX_REPORT_ENTRIES)
        .filter((pair): pair is [string, number] => Array.isArray(pair) && isKey(pair[0]) && isCount(pair[1]))
        .map(([key, count]) => [key, count])
    : [];

/** The counts of a worker's refusal report that are counts; the rest is dropped. */
export function checkedRefusalReport(report: unknown): RefusalReport {
  const { outcomes, topClients, unnamedClients, unlogged, untrustedForwarders } = (report ?? {}) as Record<string, unknown>;
  const counted =
    typeof outcomes === 'object' && outcomes !== null
      ? Object.fromEntries(
          Object.entries(outcomes)
            .slice(0, MAX_REPORT_ENTRIES)
            .filter(([outcome, count]) => isKey(outcome) && isCount(count)),
        )
      : {};
  return {
    outcomes: counted,
    topClients: pairs(topClients),
    unnamedClients: isCount(unnamedClients) ? unnamedClients : 0,
    unlogged: isCount(unlogged) ? unlogged : 0,
    untrustedForwarders: pairs(untrustedForwarders),
  };
}

/** A worker's load: the busy share of its event loop, 0 to 1; anything else counts as busy (it draws no connection). */
export function checkedLoad(load: unknown): number {
  return typeof load === 'number' && load >= 0 && load <= 1 ? load : 1;
}

/** A worker's log lines: strings, each cut by the logger that writes it. */
export function checkedLines(lines: unknown): string[] {
  if (!Array.isArray(lines)) throw malformed('log message');
  const kept = lines.slice(0, MAX_REPORT_ENTRIES).filter((line): line is string => typeof line === 'string');
  const dropped = lines.length - kept.length;
  return dropped === 0
    ? kept
    : [
        ...kept,
        `${new Date().toISOString()} warn dropped log lines a worker sent that were not lines or past ${MAX_REPORT_ENTRIES} at once count=${dropped}`,
      ];
}
