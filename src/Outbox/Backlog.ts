/**
 * The outbox backlog: how many events are not yet published, and how old the
 * oldest is, and how many of them wait for a route. Read by the relay's gauges
 * and the ops dashboard; the partial index on unpublished rows keeps it cheap.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export interface Backlog {
  readonly backlog: number
  /** Null when nothing is waiting. */
  readonly oldestUnpublishedSeconds: number | null
}

export const readBacklog = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ n: number; age: number | null }>`
    SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM outbox WHERE published_at IS NULL`
  const backlog: Backlog = { backlog: row?.n ?? 0, oldestUnpublishedSeconds: row?.age ?? null }
  return backlog
})

/** Unpublished events the broker returned as unroutable, waiting for a route (from the same index). */
export const readUnroutable = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ n: number }>`
    SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL AND retry_at IS NOT NULL`
  return row?.n ?? 0
})
