/**
 * The transactional outbox, and the only place that writes it. A domain write
 * adds its event inside its own SQL transaction, so the event exists if and
 * only if the write committed: `appendEvent` as a statement of its own,
 * `outboxInsert` as part of a repo's larger statement. Once the write has
 * committed, `RelayWake` wakes the relays.
 */
import { SqlClient, type Statement } from "@effect/sql"
import { Effect, Queue } from "effect"
import type { DomainEvent } from "../Domain/Events.js"
import { traced } from "../Observability/Span.js"
import { currentTraceHeaders } from "../Observability/TraceContext.js"
import { PREPARED } from "../Store/Sql.js"

export const OUTBOX_CHANNEL = "opsdesk_outbox"

export type EventHeaders = Readonly<Record<string, string>>

/** The headers an event travels with: the trace context of the write (see Observability/TraceContext), plus `extra`. */
export const eventHeaders = (extra: EventHeaders = {}): Effect.Effect<EventHeaders> =>
  Effect.map(currentTraceHeaders, (trace) => ({ ...trace, ...extra }))

const fromClause = (sql: SqlClient.SqlClient, from: Statement.Fragment | undefined) =>
  from === undefined ? sql`` : sql` FROM ${from}`

/**
 * The INSERT of `event`'s outbox row. With `from` (a CTE of the same
 * statement), the row is inserted once per row of it.
 */
export const outboxInsert = (
  sql: SqlClient.SqlClient,
  event: DomainEvent,
  headers: EventHeaders,
  from?: Statement.Fragment
) =>
  sql`INSERT INTO outbox (event_id, event_type, envelope, headers)
    SELECT ${event.eventId}::uuid, ${event.event}, ${JSON.stringify(event)}::json, ${JSON.stringify(headers)}::jsonb${
    fromClause(sql, from)
  }`

export const appendEvent = (event: DomainEvent, extraHeaders: EventHeaders = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // A fixed text, run by every write that appends an event: each connection prepares it once.
    yield* sql`${sql.literal(PREPARED)}${outboxInsert(sql, event, yield* eventHeaders(extraHeaders))}`
  }).pipe(traced("Outbox.appendEvent", { attributes: { event: event.event, eventId: event.eventId } }))

/**
 * Wakes the relays (their LISTEN on OUTBOX_CHANNEL) after a write that
 * appended events has committed: `wake` once the write's transaction is over.
 * The NOTIFY is a statement of its own, never part of the write: PostgreSQL
 * serializes the commits of notifying transactions (a lock held through the
 * commit's WAL flush), which queued concurrent writes behind each other
 * (README, Benchmarks). One NOTIFY at a time per process; the wake-ups of
 * writes that commit meanwhile coalesce into the next one, which starts after
 * their commits, so the relay's claim sees their rows. The NOTIFY makes
 * nothing durable, so its commit does not wait for the WAL. `wake` does not
 * wait for it: a wake-up lost with the process, or to a database error,
 * leaves the rows to the relay's poll (OUTBOX_POLL_INTERVAL_MS).
 */
export class RelayWake extends Effect.Service<RelayWake>()("OpsDesk/RelayWake", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pending = yield* Queue.sliding<void>(1)
    const notify = sql`${sql.literal(PREPARED)}SELECT pg_notify(${OUTBOX_CHANNEL}, ''),
      set_config('synchronous_commit', 'off', true)`
    yield* Queue.take(pending).pipe(Effect.zipRight(Effect.ignore(notify)), Effect.forever, Effect.forkScoped)
    return { wake: Effect.asVoid(Queue.offer(pending, undefined)) } as const
  })
}) {}
