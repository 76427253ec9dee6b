/**
 * The transactional outbox. A domain write calls `appendEvent` inside its own
 * SQL transaction, so the event exists if and only if the write committed.
 * The NOTIFY is delivered at commit and wakes the relay.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { DomainEvent } from "../Domain/Events.js"
import { currentTraceHeaders } from "../Observability/TraceContext.js"

export const OUTBOX_CHANNEL = "opsdesk_outbox"

export const appendEvent = (event: DomainEvent, extraHeaders: Readonly<Record<string, string>> = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The trace context of the write travels with the event (see Observability/TraceContext).
    const headers = { ...(yield* currentTraceHeaders), ...extraHeaders }
    yield* sql`INSERT INTO outbox (event_id, event_type, envelope, headers)
      VALUES (${event.eventId}, ${event.event}, ${JSON.stringify(event)}::json, ${JSON.stringify(headers)}::jsonb)`
    // A non-empty payload: @effect/sql-pg's listen drops empty notifications.
    yield* sql`SELECT pg_notify(${OUTBOX_CHANNEL}, ${event.event})`
  }).pipe(Effect.withSpan("Outbox.appendEvent", { attributes: { event: event.event, eventId: event.eventId } }))
