/**
 * Retention: published outbox rows, claims (`processed_events`),
 * notifications, settled deliveries and audit rows are each kept for their window
 * (RetentionConfig) and then removed, oldest first, in batches of
 * RETENTION_BATCH_SIZE rows, one short statement per batch (src/Retention/Repo.ts).
 *
 * The worker runs it every RETENTION_INTERVAL (`RetentionScheduleLive`);
 * `opsdesk maintain` runs it once. Several at once are safe: each batch skips
 * the rows another one holds.
 *
 * Batches rather than time partitions: the idempotency claim needs a unique
 * key on (event_id, processor_name), and a partitioned table can only have a
 * unique key that contains its partition key (a time), which would let the
 * same event be claimed once per partition. Measured costs: README, Retention.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Duration, Effect, Layer, Metric, Schedule } from "effect"
import { RetentionConfig } from "../Config.js"
import { traced } from "../Observability/Span.js"
import {
  autovacuumOn,
  countExpired,
  type Cutoffs,
  deleteBatch,
  readCutoffs,
  RETENTION_TABLES,
  type RetentionTable,
  vacuum
} from "./Repo.js"

export const removedTotal = Metric.counter("opsdesk_retention_removed_total", {
  description: "Rows removed by retention, by table",
  incremental: true
})
export const lastRunTimestamp = Metric.gauge("opsdesk_retention_last_run_timestamp_seconds", {
  description: "When the last complete retention run ended (Unix time)"
})
export const lastRunDuration = Metric.gauge("opsdesk_retention_last_run_duration_seconds", {
  description: "How long the last complete retention run took"
})
export const failedRuns = Metric.counter("opsdesk_retention_failed_runs_total", {
  description: "Retention runs that stopped on an error (the next run starts over)",
  incremental: true
})

export type RetentionSettings = Pick<
  RetentionConfig,
  "batchSize" | "batchPause" | "outbox" | "processedEvents" | "notifications" | "deliveries" | "auditLog"
>

/** Each table's window. */
export const windows = (cfg: RetentionSettings): Record<RetentionTable, Duration.Duration> => ({
  outbox: cfg.outbox,
  processed_events: cfg.processedEvents,
  notifications: cfg.notifications,
  deliveries: cfg.deliveries,
  audit_log: cfg.auditLog
})

export interface TableReport {
  readonly table: RetentionTable
  readonly window: Duration.Duration
  /** Rows older than this were removed (or, dry run, would be). */
  readonly cutoff: Date
  /** Rows removed; on a dry run, rows that would be removed. */
  readonly removed: number
  /** Whether it was vacuumed after (only when the server's autovacuum is off). */
  readonly vacuumed: boolean
  readonly batches: number
  readonly millis: number
}

export interface RunReport {
  readonly dryRun: boolean
  readonly tables: ReadonlyArray<TableReport>
  /** Claims are kept past their window while an older outbox row is unpublished: since when. */
  readonly claimsHeldBy: Date | null
  readonly millis: number
}

/** Removes one table's expired rows, batch after batch, until a batch comes back short. */
const drain = (cfg: RetentionSettings, table: RetentionTable, cutoff: Date) =>
  Effect.gen(function*() {
    const counter = removedTotal.pipe(Metric.tagged("table", table))
    let removed = 0
    let batches = 0
    for (;;) {
      const n = yield* deleteBatch[table](cutoff, cfg.batchSize)
      batches++
      removed += n
      if (n > 0) yield* Metric.incrementBy(counter, n)
      // Short: nothing older is left (or the rest is held by another transaction, for the next run).
      if (n < cfg.batchSize) break
      yield* Effect.sleep(cfg.batchPause)
    }
    return { removed, batches }
  })

/** One run over the tables; `dryRun` counts instead of removing. */
export const runRetention = (
  cfg: RetentionSettings,
  options: { readonly dryRun?: boolean } = {}
): Effect.Effect<RunReport, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const dryRun = options.dryRun ?? false
    const w = windows(cfg)
    const started = yield* Clock.currentTimeMillis
    const cutoffs: Cutoffs = yield* readCutoffs({
      outbox: Duration.toMillis(w.outbox),
      processed_events: Duration.toMillis(w.processed_events),
      notifications: Duration.toMillis(w.notifications),
      deliveries: Duration.toMillis(w.deliveries),
      audit_log: Duration.toMillis(w.audit_log)
    })
    // Removed rows leave dead tuples that only VACUUM makes reusable: without autovacuum the files grow forever.
    const mustVacuum = !dryRun && !(yield* autovacuumOn)
    const tables: Array<TableReport> = []
    for (const table of RETENTION_TABLES) {
      const t0 = yield* Clock.currentTimeMillis
      const cutoff = cutoffs[table]
      const { batches, removed } = dryRun
        ? { removed: yield* countExpired(table, cutoff), batches: 0 }
        : yield* drain(cfg, table, cutoff)
      const vacuumed = mustVacuum && removed > 0
      if (vacuumed) yield* vacuum(table)
      tables.push({
        table,
        window: w[table],
        cutoff,
        removed,
        batches,
        vacuumed,
        millis: (yield* Clock.currentTimeMillis) - t0
      })
    }
    const ended = yield* Clock.currentTimeMillis
    if (!dryRun) {
      yield* Metric.set(lastRunTimestamp, ended / 1000)
      yield* Metric.set(lastRunDuration, (ended - started) / 1000)
    }
    const report: RunReport = { dryRun, tables, claimsHeldBy: cutoffs.claimsHeldBy, millis: ended - started }
    return report
  }).pipe(traced("Retention.run"))

/** `outbox 7d, processed_events 14d, ...`: the windows, for the start-up line. */
export const describeWindows = (cfg: RetentionConfig) =>
  `outbox (published) ${Duration.format(cfg.outbox)}, processed_events (dedupe window) ${
    Duration.format(cfg.processedEvents)
  } > DLQ_REPLAY_WINDOW ${Duration.format(cfg.dlqReplayWindow)} + retry delays ${
    Duration.format(cfg.retryDelaySpan)
  }, notifications ${Duration.format(cfg.notifications)}, deliveries (settled) ${
    Duration.format(cfg.deliveries)
  }, audit_log ${Duration.format(cfg.auditLog)}`

const summary = (report: RunReport) =>
  `Retention: removed ${report.tables.map((t) => `${t.removed} ${t.table}`).join(", ")} in ${report.millis} ms` +
  (report.claimsHeldBy === null
    ? ""
    : `; claims kept since ${report.claimsHeldBy.toISOString()} (an outbox row from then is still unpublished)`)

/**
 * The worker's retention: logs the windows at start-up, then runs every
 * RETENTION_INTERVAL (the first run one interval after start, so it does not
 * add to a start-up's load) in a fiber that shutdown interrupts, between two
 * batches or inside one (a batch is one statement; an interrupted one is rolled back).
 * A failed run is logged and counted; the next one starts over.
 */
export const RetentionScheduleLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* RetentionConfig
    if (!cfg.enabled) {
      return yield* Effect.logWarning(
        `Retention off (RETENTION_ENABLED=false): no table is trimmed; run \`opsdesk maintain\` yourself. Windows: ${
          describeWindows(cfg)
        }`
      )
    }
    yield* Effect.logInfo(
      `Retention every ${Duration.format(cfg.interval)}, batches of ${cfg.batchSize}: ${describeWindows(cfg)}`
    )
    const once = runRetention(cfg).pipe(
      Effect.tap((report) =>
        report.tables.some((t) => t.removed > 0) || report.claimsHeldBy !== null
          ? Effect.logInfo(summary(report))
          : Effect.void
      ),
      Effect.catchAllCause((cause) =>
        Effect.zipRight(
          Metric.increment(failedRuns),
          Effect.logWarning("Retention run failed; the next run starts over", cause)
        )
      )
    )
    // The first run one interval after start, then one interval after each run ends (not delay + spacing).
    yield* Effect.sleep(cfg.interval).pipe(
      Effect.zipRight(Effect.repeat(once, Schedule.spaced(cfg.interval))),
      Effect.forkScoped
    )
  })
)
