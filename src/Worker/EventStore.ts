/**
 * The worker's database side: the watcher lookup for `message.sent`, and the
 * batch commit that claims events in `processed_events` and writes their
 * notifications in one transaction. A claimed event's effects commit with its
 * claim, so a crash at any point neither loses nor repeats them.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { describeSqlError, isTransientSqlError } from "../Store/SqlState.js"
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

const toStoreError = (what: string) => (error: SqlError.SqlError) =>
  new StoreError({
    message: `${what}: ${describeSqlError(error)}`,
    transient: isTransientSqlError(error),
    cause: error
  })

const COMMIT_SQL = `
WITH claimed AS (
  INSERT INTO processed_events (event_id, event_type, processor_name)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
  ON CONFLICT (event_id, processor_name) DO NOTHING
  RETURNING event_id
), notified AS (
  INSERT INTO notifications (event_id, event_type, recipient_id, channel, body)
  SELECT n.* FROM unnest($4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[])
    AS n(event_id, event_type, recipient_id, channel, body)
  WHERE n.event_id IN (SELECT event_id FROM claimed)
)
SELECT event_id FROM claimed`

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
      commit: (processor, plans) => {
        if (plans.length === 0) return Effect.succeed(new Set<string>())
        const notifications: Array<NotificationRow> = plans.flatMap((p) => p.notifications)
        // One statement, so one implicit transaction and one round trip: the
        // claims, and the notifications of exactly the events it claimed.
        return sql.unsafe<{ readonly eventId: string }>(COMMIT_SQL, [
          plans.map((p) => p.event.eventId),
          plans.map((p) => p.event.event),
          plans.map(() => processor),
          notifications.map((n) => n.eventId),
          notifications.map((n) => n.eventType),
          notifications.map((n) => n.recipientId),
          notifications.map((n) => n.channel),
          notifications.map((n) => n.body)
        ]).pipe(
          Effect.map((rows) => new Set(rows.map((r) => r.eventId)) as ReadonlySet<string>),
          Effect.mapError(toStoreError("Commit failed"))
        )
      }
    })
  })
)
