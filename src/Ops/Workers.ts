/**
 * The workers panel: every live worker from the registry table (written by
 * each worker's heartbeat, src/Worker/Registry.ts), one row each, and their
 * counters summed per event type. A row not refreshed for
 * WORKER_REGISTRY_TTL_MS, or marked stopped, is not counted.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import { EVENT_NAMES } from "../Domain/Events.js"
import type { WorkerCounters, WorkerEntry, WorkerEventStats } from "./Domain.js"

interface Row {
  readonly id: string
  readonly host: string
  readonly pid: number
  readonly startedAt: Date
  readonly lastSeen: Date
  readonly ageSeconds: number
  readonly events: unknown
  readonly brokerNode: string | null
}

interface EventCounters {
  readonly event: string
  readonly processed: number
  readonly failed: number
  readonly retried: number
  readonly duplicates: number
  readonly poison: number
  readonly timeSum: number
  readonly timeCount: number
  readonly lagSum: number
  readonly lagCount: number
}

const KEYS = [
  "processed",
  "failed",
  "retried",
  "duplicates",
  "poison",
  "timeSum",
  "timeCount",
  "lagSum",
  "lagCount"
] as const

/** The `events` column as written by the registry; anything malformed counts as nothing. */
const eventsOf = (value: unknown): ReadonlyArray<EventCounters> => {
  const parsed: unknown = typeof value === "string" ? JSON.parse(value) : value
  if (!Array.isArray(parsed)) return []
  return parsed.flatMap((e: unknown) => {
    if (typeof e !== "object" || e === null || typeof (e as { event?: unknown }).event !== "string") return []
    const record = e as Record<string, unknown>
    const out: Record<string, number | string> = { event: record["event"] as string }
    for (const k of KEYS) out[k] = typeof record[k] === "number" && Number.isFinite(record[k]) ? record[k] : 0
    return [out as unknown as EventCounters]
  })
}

const countersOf = (events: ReadonlyArray<EventCounters>): WorkerCounters => {
  const sum = (k: "processed" | "failed" | "retried" | "duplicates" | "poison") => events.reduce((n, e) => n + e[k], 0)
  const failed = sum("failed")
  const poison = sum("poison")
  return {
    processed: sum("processed"),
    failed,
    retried: sum("retried"),
    duplicates: sum("duplicates"),
    poison,
    deadLettered: failed + poison
  }
}

export interface WorkersSummary {
  readonly items: ReadonlyArray<WorkerEntry>
  readonly events: ReadonlyArray<WorkerEventStats>
  readonly totals: WorkerCounters
  /** Every live worker's lag histogram sum (seconds) and count: the history's average lag between two samples. */
  readonly lag: { readonly sum: number; readonly count: number }
}

/** The live workers and their sums. */
export const readWorkers = (ttl: Duration.Duration) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<Row>`
      SELECT id, host, pid, started_at, last_seen, extract(epoch FROM now() - last_seen)::float8 AS age_seconds, events,
        broker_node
      FROM workers
      WHERE stopped_at IS NULL AND last_seen > now() - ${Duration.toMillis(ttl)} * interval '1 millisecond'
      ORDER BY started_at, id`
    const perWorker = rows.map((row) => ({ row, events: eventsOf(row.events) }))
    const all = perWorker.flatMap((w) => w.events)
    const processedAll = all.reduce((n, e) => n + e.processed, 0)
    const items = perWorker.map(({ events, row }): WorkerEntry => {
      const counters = countersOf(events)
      const time = events.reduce((acc, e) => [acc[0] + e.timeSum, acc[1] + e.timeCount], [0, 0])
      const lag = events.reduce((acc, e) => [acc[0] + e.lagSum, acc[1] + e.lagCount], [0, 0])
      return {
        id: row.id,
        host: row.host,
        pid: row.pid,
        brokerNode: row.brokerNode,
        startedAt: row.startedAt.toISOString(),
        lastSeen: row.lastSeen.toISOString(),
        lastSeenSeconds: Math.max(0, row.ageSeconds),
        ...counters,
        share: processedAll > 0 ? counters.processed / processedAll : null,
        avgProcessingMs: time[1] > 0 ? (time[0] / time[1]) * 1000 : null,
        avgLagMs: lag[1] > 0 ? (lag[0] / lag[1]) * 1000 : null
      }
    })
    const names = [...new Set<string>([...EVENT_NAMES, ...all.map((e) => e.event)])]
    const events = names.map((event): WorkerEventStats => {
      const mine = all.filter((e) => e.event === event)
      const time = mine.reduce((acc, e) => [acc[0] + e.timeSum, acc[1] + e.timeCount], [0, 0])
      const lag = mine.reduce((acc, e) => [acc[0] + e.lagSum, acc[1] + e.lagCount], [0, 0])
      return {
        event,
        ...countersOf(mine),
        avgProcessingMs: time[1] > 0 ? (time[0] / time[1]) * 1000 : null,
        avgLagMs: lag[1] > 0 ? (lag[0] / lag[1]) * 1000 : null
      }
    })
    const lag = {
      sum: all.reduce((n, e) => n + e.lagSum, 0),
      count: all.reduce((n, e) => n + e.lagCount, 0)
    }
    const summary: WorkersSummary = { items, events, totals: countersOf(all), lag }
    return summary
  })
