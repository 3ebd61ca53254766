import type { NodeStore } from './nodeStore.js';
import type { LimitSpec, RateLimiter } from './rateLimiter.js';
import type { CeilingCounter } from './ceilingCounter.js';
import type { TransactionLog } from './transactionLog.js';

/**
 * The service's state, held only by a gate's primary process. Two implementations: LevelDB under --datapath (one
 * gate) and PostgreSQL (--database: every gate sharing it sees the same nodes, pending entries, transactions and limits).
 */
export interface Store {
  /** 'leveldb' or 'postgresql', and where: for logs and doctor (never a password). */
  readonly description: string;
  readonly nodes: NodeStore;
  readonly transactions: TransactionLog;
  /** A rate limiter counted where every process using this store sees it (per gate for LevelDB, shared for PostgreSQL). */
  createRateLimiter(limit: LimitSpec): RateLimiter;
  /** A ceiling (of new accounts) counted where the rate limits are. */
  createCeilingCounter(limit: LimitSpec): CeilingCounter;
  /** Resolves when the store answers now; rejects with the reason otherwise (for /ready). */
  check(): Promise<void>;
  /** Where gates sharing this store say their shared settings (PostgreSQL; a LevelDB store has one gate). */
  readonly gates?: GateRegistry;
  close(): Promise<void>;
}

export type StoreOpenFailure = 'locked' | 'corrupt' | 'missing' | 'unavailable' | 'schema';

export class StoreOpenError extends Error {
  /**
   * locked: another process holds it; corrupt: damaged; missing: no database there; schema: its schema is not the one
   * this version uses (newer, or older for a command that does not migrate); unavailable: anything else.
   */
  readonly reason: StoreOpenFailure;
  constructor(reason: StoreOpenFailure, message: string) {
    super(message);
    this.name = 'StoreOpenError';
    this.reason = reason;
  }
}

/** The gates sharing one database, each with the settings it runs with that they must agree on. */
export interface GateRegistry {
  /** Records this gate's settings, and returns those of the other gates seen in the last day. */
  announce(gate: string, settings: Readonly<Record<string, string>>): Promise<{ gate: string; settings: Record<string, string> }[]>;
  /** This gate stops: it is no longer compared with. */
  leave(gate: string): Promise<void>;
}
