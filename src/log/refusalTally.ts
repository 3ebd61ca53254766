import { LineBudget, REFUSAL_LINES_PER_SECOND } from './lineBudget.js';
import type { LogFields } from './logger.js';

/** Refused requests of one interval: counts per outcome and the clients that sent the most. */
export interface RefusalReport {
  readonly outcomes: Readonly<Record<string, number>>;
  /** [client, refusals], most first. */
  readonly topClients: readonly (readonly [string, number])[];
  /** Requests (refused or not) that came through a trusted proxy naming no client: each counted as the proxy. */
  readonly unnamedClients?: number;
  /** Refusals whose own line (--verbosity 4 and 5) was not written: past the service's budget of lines a second. */
  readonly unlogged?: number;
  /** [peer, requests] of local peers, not trusted proxies, that sent X-Forwarded-For (not believed). */
  readonly untrustedForwarders?: readonly (readonly [string, number])[];
}

/** Local peers sending X-Forwarded-For remembered per interval (a handful of proxies at most in any deployment). */
const MAX_FORWARDERS = 16;

/** Distinct clients remembered per interval; past that a flood from ever-new addresses costs no more memory. */
const MAX_CLIENTS = 10_000;
/** Clients a report carries from a worker to the primary. */
export const REPORTED_CLIENTS = 50;
/** Clients the summary line names. */
const LOGGED_CLIENTS = 5;
const OTHER_CLIENTS = 'others';

/**
 * Counts refusals instead of logging each: a flood must not cost a formatted line per request.
 * Workers drain theirs into a report for the primary, which merges them and logs one line per interval.
 */
export class RefusalTally {
  private outcomes = new Map<string, number>();
  private clients = new Map<string, number>();
  private unnamed = 0;
  private forwarders = new Map<string, number>();
  private unloggedLines = 0;
  private readonly lines: LineBudget;

  /** `linesPerSecond`: this process's share of the per-refusal lines the service writes a second. */
  constructor(linesPerSecond = REFUSAL_LINES_PER_SECOND) {
    this.lines = new LineBudget(linesPerSecond);
  }

  /** Whether a refusal's own line may be written now; if not, it is counted in the summary instead. */
  lineAllowed(): boolean {
    if (this.lines.take()) return true;
    this.unloggedLines += 1;
    return false;
  }

  add(outcome: string, client: string, count = 1): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + count);
    this.countClient(client, count);
  }

  /** A request came through a trusted proxy that named no client. */
  unnamedClient(count = 1): void {
    this.unnamed += count;
  }

  /** A local peer that is not a trusted proxy sent X-Forwarded-For. */
  untrustedForwarder(peer: string, count = 1): void {
    if (this.forwarders.has(peer) || this.forwarders.size < MAX_FORWARDERS)
      this.forwarders.set(peer, (this.forwarders.get(peer) ?? 0) + count);
  }

  merge(report: RefusalReport): void {
    this.unnamed += report.unnamedClients ?? 0;
    for (const [peer, count] of report.untrustedForwarders ?? []) this.untrustedForwarder(peer, count);
    this.unloggedLines += report.unlogged ?? 0;
    for (const [outcome, count] of Object.entries(report.outcomes)) this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + count);
    for (const [client, count] of report.topClients) this.countClient(client, count);
  }

  /** Past MAX_CLIENTS distinct clients, a new one is counted under "others". */
  private countClient(client: string, count: number): void {
    const key = this.clients.has(client) || this.clients.size < MAX_CLIENTS ? client : OTHER_CLIENTS;
    this.clients.set(key, (this.clients.get(key) ?? 0) + count);
  }

  get empty(): boolean {
    return this.outcomes.size === 0 && this.unnamed === 0 && this.forwarders.size === 0;
  }

  /** The counts so far, `top` clients of them; starts a new interval. */
  drain(top = REPORTED_CLIENTS): RefusalReport {
    const named = [...this.clients].filter(([client]) => client !== OTHER_CLIENTS).sort((a, b) => b[1] - a[1]);
    const unnamed = (this.clients.get(OTHER_CLIENTS) ?? 0) + named.slice(top).reduce((sum, [, count]) => sum + count, 0);
    const report: RefusalReport = {
      outcomes: Object.fromEntries(this.outcomes),
      topClients: [...named.slice(0, top), ...(unnamed > 0 ? [[OTHER_CLIENTS, unnamed] as const] : [])],
      ...(this.unnamed > 0 ? { unnamedClients: this.unnamed } : {}),
      ...(this.unloggedLines > 0 ? { unlogged: this.unloggedLines } : {}),
      ...(this.forwarders.size > 0 ? { untrustedForwarders: [...this.forwarders] } : {}),
    };
    this.forwarders = new Map();
    this.unloggedLines = 0;
    this.outcomes = new Map();
    this.clients = new Map();
    this.unnamed = 0;
    return report;
  }
}

/** A client as the summary names it: `=`, `,` and anything else a log reader would split on are %-escaped. */
const escapeClient = (client: string): string =>
  client.replace(/[=,%\s"\\]/g, (char) => `%${char.charCodeAt(0).toString(16).padStart(2, '0')}`);

/** The one line an interval's refusals become: `refused requests interval_s=10 total=… forbidden=… top_clients=a=3,b=2`. */
export function refusalSummaryFields(report: RefusalReport, intervalMs: number): LogFields {
  const total = Object.values(report.outcomes).reduce((sum, count) => sum + count, 0);
  const named = report.topClients.filter(([client]) => client !== OTHER_CLIENTS).slice(0, LOGGED_CLIENTS);
  return {
    interval_s: intervalMs / 1000,
    total,
    ...Object.fromEntries(Object.entries(report.outcomes).sort(([a], [b]) => a.localeCompare(b))),
    top_clients: named.map(([client, count]) => `${escapeClient(client)}=${count}`).join(','),
    ...(report.unlogged === undefined ? {} : { unlogged: report.unlogged }),
  };
}
