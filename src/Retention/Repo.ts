/**
 * The SQL of retention: one statement per table that removes at most `limit`
 * of its oldest expired rows, and one that counts them (`--dry-run`).
 *
 * Each delete is its own short transaction: it picks the rows through the
 * table's time index (migration 0006), oldest first, skips any row another
 * transaction holds (`SKIP LOCKED`: never waits on a writer of the rows it
 * removes), and rechecks the condition on the rows it deletes. The one
 * exception: the notifications' delete locks their deliveries and waits for a
 * change in flight to one of them (a retry), so it sees the delivery as that
 * change left it.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const RETENTION_TABLES = ["outbox", "processed_events", "notifications", "deliveries", "audit_log"] as const
export type RetentionTable = typeof RETENTION_TABLES[number]

/** One statement's count (a CTE's `count(*)`, as int). */
const countOf = (rows: ReadonlyArray<{ readonly n: number }>) => rows[0]?.n ?? 0

/**
 * Published outbox rows published before `cutoff`. An unpublished row
 * (`published_at IS NULL`, including one the broker returned as unroutable)
 * is never removed: both the pick and the delete require `published_at`.
 */
export const deletePublishedOutbox = (cutoff: Date, limit: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: number }>`
      WITH picked AS (
        SELECT id FROM outbox
        WHERE published_at < ${cutoff}
        ORDER BY published_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), removed AS (
        DELETE FROM outbox o USING picked
        WHERE o.id = picked.id AND o.published_at IS NOT NULL AND o.published_at < ${cutoff}
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM removed`.pipe(Effect.map(countOf)))

/** Claims (`processed_events`) made before `cutoff`: the dedupe window's end. */
export const deleteExpiredClaims = (cutoff: Date, limit: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: number }>`
      WITH picked AS (
        SELECT id FROM processed_events
        WHERE processed_at < ${cutoff}
        ORDER BY processed_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), removed AS (
        DELETE FROM processed_events p USING picked
        WHERE p.id = picked.id AND p.processed_at < ${cutoff}
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM removed`.pipe(Effect.map(countOf)))

/**
 * Notifications created before `cutoff`, except those with a delivery still
 * pending (the dispatcher has yet to send or give up on it). Their settled
 * deliveries and the attempt log go with them (ON DELETE CASCADE, migration 0009).
 */
export const deleteExpiredNotifications = (cutoff: Date, limit: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: number }>`
      WITH picked AS (
        SELECT n.id FROM notifications n
        WHERE n.created_at < ${cutoff}
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.state = 'pending')
        ORDER BY n.created_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), held AS (
        -- Their deliveries, locked and read as they are now (FOR UPDATE waits for, then reads, a concurrent
        -- change): a failed one retried since the check above is pending, and keeps its notification; none
        -- can be retried between here and the delete.
        SELECT d.notification_id, d.state FROM deliveries d JOIN picked ON d.notification_id = picked.id
        FOR UPDATE OF d
      ), removed AS (
        DELETE FROM notifications n USING picked
        WHERE n.id = picked.id
          AND NOT EXISTS (SELECT 1 FROM held WHERE held.notification_id = n.id AND held.state = 'pending')
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM removed`.pipe(Effect.map(countOf)))

/**
 * Deliveries (webhook ones above all: an email's also goes with its
 * notification) settled, delivered or failed, with no change since before
 * `cutoff`; a pending one, due or waiting for its next try or leased by a
 * dispatcher, is never removed, and a failed one retried from the CLI is
 * pending again. Picked through `deliveries_created_idx` (a row last changed
 * before the cutoff was created before it too). Its attempt log goes with it
 * (ON DELETE CASCADE, migration 0009): a bounded number of rows each, the
 * tries of the retry tiers plus any retries asked for.
 */
export const deleteExpiredDeliveries = (cutoff: Date, limit: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: number }>`
      WITH picked AS (
        SELECT id FROM deliveries
        WHERE created_at < ${cutoff} AND updated_at < ${cutoff} AND state <> 'pending'
        ORDER BY created_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), removed AS (
        DELETE FROM deliveries d USING picked
        WHERE d.id = picked.id AND d.state <> 'pending' AND d.updated_at < ${cutoff}
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM removed`.pipe(Effect.map(countOf)))

/** Audit rows written before `cutoff`. */
export const deleteExpiredAuditRows = (cutoff: Date, limit: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: number }>`
      WITH picked AS (
        SELECT id FROM audit_log
        WHERE created_at < ${cutoff}
        ORDER BY created_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), removed AS (
        DELETE FROM audit_log a USING picked
        WHERE a.id = picked.id
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM removed`.pipe(Effect.map(countOf)))

export const deleteBatch: Record<
  RetentionTable,
  (cutoff: Date, limit: number) => ReturnType<typeof deleteExpiredAuditRows>
> = {
  outbox: deletePublishedOutbox,
  processed_events: deleteExpiredClaims,
  notifications: deleteExpiredNotifications,
  deliveries: deleteExpiredDeliveries,
  audit_log: deleteExpiredAuditRows
}

/** How many rows the delete of `table` would remove now, all batches together (`--dry-run`). */
export const countExpired = (table: RetentionTable, cutoff: Date) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    switch (table) {
      case "outbox":
        return sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE published_at < ${cutoff}`
      case "processed_events":
        return sql<{ n: number }>`SELECT count(*)::int AS n FROM processed_events WHERE processed_at < ${cutoff}`
      case "notifications":
        return sql<{ n: number }>`SELECT count(*)::int AS n FROM notifications n WHERE n.created_at < ${cutoff}
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.state = 'pending')`
      case "deliveries":
        return sql<{ n: number }>`SELECT count(*)::int AS n FROM deliveries
          WHERE created_at < ${cutoff} AND updated_at < ${cutoff} AND state <> 'pending'`
      case "audit_log":
        return sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_log WHERE created_at < ${cutoff}`
    }
  }).pipe(Effect.map(countOf))

export interface Cutoffs {
  readonly outbox: Date
  readonly processed_events: Date
  readonly notifications: Date
  readonly deliveries: Date
  readonly audit_log: Date
  /** When claims are kept longer than their window: the oldest unpublished outbox row's creation time. */
  readonly claimsHeldBy: Date | null
}

/**
 * The cutoffs by the database's clock (the rows' times are the database's).
 * A claim is also kept while any outbox row created before it is still
 * unpublished: the relay may yet publish that event again (it published,
 * then died before marking it), however long that takes.
 */
export const readCutoffs = (windowsMs: Readonly<Record<RetentionTable, number>>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{
      outbox: Date
      processedEvents: Date
      notifications: Date
      deliveries: Date
      auditLog: Date
      oldestUnpublished: Date | null
    }>`
      SELECT now() - ${windowsMs.outbox}::float8 * interval '1 millisecond' AS outbox,
             now() - ${windowsMs.processed_events}::float8 * interval '1 millisecond' AS processed_events,
             now() - ${windowsMs.notifications}::float8 * interval '1 millisecond' AS notifications,
             now() - ${windowsMs.deliveries}::float8 * interval '1 millisecond' AS deliveries,
             now() - ${windowsMs.audit_log}::float8 * interval '1 millisecond' AS audit_log,
             (SELECT min(created_at) FROM outbox WHERE published_at IS NULL) AS oldest_unpublished`).pipe(
      Effect.map(([row]): Cutoffs => {
        const r = row!
        const held = r.oldestUnpublished !== null && r.oldestUnpublished < r.processedEvents
        return {
          outbox: r.outbox,
          processed_events: held ? r.oldestUnpublished! : r.processedEvents,
          notifications: r.notifications,
          deliveries: r.deliveries,
          audit_log: r.auditLog,
          claimsHeldBy: held ? r.oldestUnpublished : null
        }
      })
    )

/** Whether PostgreSQL's autovacuum is on (the server setting; a table may still opt out, which is not read here). */
export const autovacuumOn = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<{ on: boolean }>`SELECT current_setting('autovacuum') = 'on' AS on`.pipe(
      Effect.map((rows) => rows[0]?.on ?? true)
    )
)

/**
 * A plain VACUUM of `table` (not FULL: it takes no lock that blocks reads or
 * writes), so the space of the removed rows is reused. Needed only where
 * autovacuum is off; `table` is one of RETENTION_TABLES, never input.
 */
export const vacuum = (table: RetentionTable) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`VACUUM (SKIP_LOCKED) ${table}`)).pipe(Effect.asVoid)
