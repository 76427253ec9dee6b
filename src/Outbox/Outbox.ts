/**
 * The transactional outbox, and the only place that writes it. A domain write
 * adds its event inside its own SQL transaction, so the event exists if and
 * only if the write committed: `appendEvent` as statements of their own,
 * `outboxInsert` and `notifyRelay` as parts of a repo's larger statement. The
 * NOTIFY is delivered at commit and wakes the relay.
 */
import { SqlClient, type Statement } from "@effect/sql"
import { Effect } from "effect"
import type { DomainEvent } from "../Domain/Events.js"
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

/** The NOTIFY that wakes the relay (its payload, the event name, is for whoever watches the channel). */
export const notifyRelay = (sql: SqlClient.SqlClient, event: DomainEvent, from?: Statement.Fragment) =>
  sql`SELECT pg_notify(${OUTBOX_CHANNEL}, ${event.event})${fromClause(sql, from)}`

export const appendEvent = (event: DomainEvent, extraHeaders: EventHeaders = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Fixed texts, run by every write that appends an event: each connection prepares them once.
    const prepared = sql.literal(PREPARED)
    yield* sql`${prepared}${outboxInsert(sql, event, yield* eventHeaders(extraHeaders))}`
    yield* sql`${prepared}${notifyRelay(sql, event)}`
  }).pipe(Effect.withSpan("Outbox.appendEvent", { attributes: { event: event.event, eventId: event.eventId } }))
