import type pg from 'pg';
import type { NodeRecord, NodeStore, PendingClaim, PendingRegistration } from '../nodeStore.js';
import { query } from './pgConnection.js';

interface NodeRow {
  readonly localpart: string;
  readonly user_id: string;
  readonly displayname: string;
  readonly registered_at: Date;
  readonly last_seen: Date | null;
  readonly answered: boolean;
}

interface PendingRow {
  readonly localpart: string;
  readonly user_id: string;
  readonly displayname: string;
  readonly started_at: Date;
}

const NODE_COLUMNS = 'localpart, user_id, displayname, registered_at, last_seen, answered';
const PENDING_COLUMNS = 'localpart, user_id, displayname, started_at';
const PAGE = 1000;

function recordOf(row: NodeRow): NodeRecord {
  return {
    localpart: row.localpart,
    userId: row.user_id,
    displayname: row.displayname,
    registeredAt: row.registered_at.toISOString(),
    ...(row.last_seen === null ? {} : { lastSeen: row.last_seen.toISOString() }),
    answered: row.answered,
  };
}

function pendingOf(row: PendingRow): PendingRegistration {
  return { localpart: row.localpart, userId: row.user_id, displayname: row.displayname, startedAt: row.started_at.toISOString() };
}

const UPSERT_NODE = `INSERT INTO regservice_nodes (${NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (localpart) DO UPDATE SET user_id = EXCLUDED.user_id, displayname = EXCLUDED.displayname,
    registered_at = EXCLUDED.registered_at, last_seen = EXCLUDED.last_seen, answered = EXCLUDED.answered`;

const nodeValues = (record: NodeRecord): unknown[] => [
  record.localpart,
  record.userId,
  record.displayname,
  record.registeredAt,
  record.lastSeen ?? null,
  record.answered !== false,
];

/**
 * The claim in one statement, one round trip: the node's record if it has one (then nothing is written); else insert
 * the entry, or take over one whose lease is ours or has ended. `took_over` says the entry was there (an interrupted
 * attempt): taken from the row the upsert wrote, not from the statement's snapshot, since another gate's confirm may
 * delete that entry (and write the record) while this statement waits for its row. Then this claim inserts afresh and
 * is no takeover, the record stays unseen, the homeserver answers M_USER_IN_USE, and the handler looks again.
 * `previous` says how long another's lease still runs when the claim fails.
 */
const CLAIM = `WITH recorded AS (SELECT ${NODE_COLUMNS} FROM regservice_nodes WHERE localpart = $1),
  previous AS (SELECT lease_until FROM regservice_pending WHERE localpart = $1),
  claimed AS (
    INSERT INTO regservice_pending (${PENDING_COLUMNS}, holder, lease_until)
      SELECT $1::text, $2::text, $3::text, $4::timestamptz, $5::text, now() + $6::bigint * interval '1 millisecond'
      WHERE NOT EXISTS (SELECT 1 FROM recorded)
    ON CONFLICT (localpart) DO UPDATE SET user_id = EXCLUDED.user_id, displayname = EXCLUDED.displayname,
      started_at = EXCLUDED.started_at, holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
      WHERE regservice_pending.holder = EXCLUDED.holder OR regservice_pending.lease_until <= now()
    RETURNING xmax <> 0 AS took_over)
  SELECT EXISTS (SELECT 1 FROM claimed) AS claimed, COALESCE((SELECT took_over FROM claimed), false) AS existed,
    (SELECT ceil(extract(epoch FROM lease_until - now()) * 1000) FROM previous)::bigint AS remaining_ms,
    recorded.*
  FROM (SELECT 1) AS one LEFT JOIN recorded ON true`;

/** Node records and pending entries in PostgreSQL, shared by every gate; leases use the database's clock. */
export function createPgNodeStore(pool: pg.Pool, options: { readonly holder: string; readonly leaseMs: number }): NodeStore {
  return {
    leaseMs: options.leaseMs,
    async get(localpart) {
      const { rows } = await query<NodeRow>(pool, `SELECT ${NODE_COLUMNS} FROM regservice_nodes WHERE localpart = $1`, [localpart]);
      return rows[0] === undefined ? undefined : recordOf(rows[0]);
    },
    async put(record) {
      await query(pool, UPSERT_NODE, nodeValues(record));
    },
    async touch(localpart, when) {
      const result = await query(pool, 'UPDATE regservice_nodes SET last_seen = GREATEST(last_seen, $2) WHERE localpart = $1', [
        localpart,
        when,
      ]);
      return (result.rowCount ?? 0) > 0;
    },
    async getPending(localpart) {
      const { rows } = await query<PendingRow>(pool, `SELECT ${PENDING_COLUMNS} FROM regservice_pending WHERE localpart = $1`, [localpart]);
      return rows[0] === undefined ? undefined : pendingOf(rows[0]);
    },
    async claimPending(entry): Promise<PendingClaim> {
      const { rows } = await query<
        { claimed: boolean; existed: boolean; remaining_ms: string | null } & (NodeRow | { [K in keyof NodeRow]: null })
      >(pool, CLAIM, [entry.localpart, entry.userId, entry.displayname, entry.startedAt, options.holder, options.leaseMs]);
      const row = rows[0];
      if (row !== undefined && row.localpart !== null) return { claimed: false, recorded: recordOf(row) };
      if (row?.claimed === true) return { claimed: true, interrupted: row.existed };
      return { claimed: false, retryAfterMs: Math.max(1000, Number(row?.remaining_ms ?? 1000)) };
    },
    async renewPending(localpart) {
      const result = await query(
        pool,
        "UPDATE regservice_pending SET lease_until = now() + $3 * interval '1 millisecond' WHERE localpart = $1 AND holder = $2",
        [localpart, options.holder, options.leaseMs],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async deletePending(localpart) {
      await query(pool, 'DELETE FROM regservice_pending WHERE localpart = $1', [localpart]);
    },
    async confirm(record) {
      // One statement, so one transaction: the record appears and the pending entry goes together.
      await query(pool, `WITH gone AS (DELETE FROM regservice_pending WHERE localpart = $1) ${UPSERT_NODE}`, nodeValues(record));
    },
    async forget(localparts) {
      const result =
        localparts === 'all'
          ? await query(pool, 'DELETE FROM regservice_nodes')
          : await query(pool, 'DELETE FROM regservice_nodes WHERE localpart = ANY($1)', [[...localparts]]);
      return result.rowCount ?? 0;
    },
    async markAnswered(localparts, answered) {
      if (localparts.length === 0) return;
      await query(pool, 'UPDATE regservice_nodes SET answered = $2 WHERE localpart = ANY($1)', [[...localparts], answered]);
    },
    async listPending() {
      const { rows } = await query<PendingRow>(pool, `SELECT ${PENDING_COLUMNS} FROM regservice_pending ORDER BY localpart`);
      return rows.map(pendingOf);
    },
    async listReconcilable() {
      const { rows } = await query<PendingRow>(
        pool,
        `SELECT ${PENDING_COLUMNS} FROM regservice_pending WHERE lease_until <= now() ORDER BY localpart`,
      );
      return rows.map(pendingOf);
    },
    async *list() {
      let after = '';
      for (;;) {
        const { rows } = await query<NodeRow>(
          pool,
          `SELECT ${NODE_COLUMNS} FROM regservice_nodes WHERE localpart > $1 ORDER BY localpart LIMIT ${PAGE}`,
          [after],
        );
        for (const row of rows) yield recordOf(row);
        const last = rows.at(-1);
        if (last === undefined || rows.length < PAGE) return;
        after = last.localpart;
      }
    },
  };
}
