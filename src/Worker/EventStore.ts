/**
 * The worker's database side: the watcher lookup for `message.sent`, and the
 * batch commit that claims events in `processed_events` and writes their
 * notifications in one transaction. A claimed event's effects commit with its
 * claim, so a crash at any point neither loses nor repeats them.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import type { NotificationRow, Plan, Watchers } from "./Handlers.js"

export class StoreError extends Data.TaggedError("StoreError")<{
  readonly message: string
  /** True when the database was unreachable (worth holding and retrying), false for a rejected statement. */
  readonly transient: boolean
  readonly cause?: unknown
}> {}

export class EventStore extends Context.Tag("OpsDesk/Worker/EventStore")<EventStore, {
  readonly watchers: (ticketIds: ReadonlyArray<string>) => Effect.Effect<Watchers, StoreError>
  /** Claims each plan's event for `processor` and writes the claimed ones' notifications; returns the claimed event ids. */
  readonly commit: (processor: string, plans: ReadonlyArray<Plan>) => Effect.Effect<ReadonlySet<string>, StoreError>
}>() {}

/** SQLSTATE classes that mean "try again later": connection (08), resources (53), operator intervention (57), rollback (40). */
const TRANSIENT_SQLSTATE = /^(08|53|57|40)/

export const isTransientSqlError = (error: SqlError.SqlError): boolean => {
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined
  const code = typeof cause?.code === "string" ? cause.code : undefined
  if (code === undefined) return true // no SQLSTATE: the connection itself failed
  if (/^[0-9A-Z]{5}$/.test(code)) return TRANSIENT_SQLSTATE.test(code)
  return true // ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...
}

const toStoreError = (what: string) => (error: SqlError.SqlError) =>
  new StoreError({ message: `${what}: ${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ""}`, transient: isTransientSqlError(error), cause: error })

export const EventStoreLive = Layer.effect(
  EventStore,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return EventStore.of({
      watchers: (ticketIds) => {
        if (ticketIds.length === 0) return Effect.succeed(new Map())
        const ids = [...new Set(ticketIds)]
        return sql<{ ticketId: string; userId: string }>`
          SELECT id AS ticket_id, owner_id AS user_id FROM tickets WHERE id IN ${sql.in(ids)}
          UNION SELECT id, assignee_id FROM tickets WHERE id IN ${sql.in(ids)} AND assignee_id IS NOT NULL
          UNION SELECT ticket_id, author_id FROM messages WHERE ticket_id IN ${sql.in(ids)}`.pipe(
          Effect.map((rows) => {
            const map = new Map<string, Array<string>>()
            for (const row of rows) {
              const list = map.get(row.ticketId) ?? []
              list.push(row.userId)
              map.set(row.ticketId, list)
            }
            return map as Watchers
          }),
          Effect.mapError(toStoreError("Watcher lookup failed"))
        )
      },
      commit: (processor, plans) =>
        sql.withTransaction(
          Effect.gen(function*() {
            if (plans.length === 0) return new Set<string>()
            const claimed = yield* sql<{ eventId: string }>`INSERT INTO processed_events ${
              sql.insert(plans.map((p) => ({ eventId: p.event.eventId, eventType: p.event.event, processorName: processor })))
            } ON CONFLICT (event_id, processor_name) DO NOTHING RETURNING event_id`
            const ids = new Set(claimed.map((r) => r.eventId))
            const notifications: Array<NotificationRow> = plans.flatMap((p) => (ids.has(p.event.eventId) ? p.notifications : []))
            if (notifications.length > 0) yield* sql`INSERT INTO notifications ${sql.insert(notifications.map((n) => ({ ...n })))}`
            return ids as ReadonlySet<string>
          })
        ).pipe(Effect.mapError(toStoreError("Commit failed")))
    })
  })
)
