/**
 * The rows a synthetic event names, so the worker treats it as real: it only
 * acts on events whose ticket (owned by the event's owner) or message (by its
 * author, on its ticket) exists. `withEntities` inserts what is missing and
 * deletes, at the end of the scope, exactly what it inserted.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { DomainEvent } from "../../src/Domain/Events.js"

interface Rows {
  readonly users: Set<string>
  /** ticket id -> owner id */
  readonly tickets: Map<string, string>
  readonly messages: Map<string, { readonly ticketId: string; readonly authorId: string }>
}

const rowsOf = (events: ReadonlyArray<DomainEvent>): Rows => {
  const rows: Rows = { users: new Set(), tickets: new Map(), messages: new Map() }
  for (const e of events) {
    if (e.event === "message.sent") {
      const p = e.payload
      rows.users.add(p.authorId)
      if (!rows.tickets.has(p.ticketId)) rows.tickets.set(p.ticketId, p.authorId)
      rows.messages.set(p.id, { ticketId: p.ticketId, authorId: p.authorId })
    } else {
      rows.users.add(e.payload.ownerId)
      rows.tickets.set(e.payload.id, e.payload.ownerId)
    }
  }
  return rows
}

export interface Inserted {
  readonly users: ReadonlyArray<string>
  readonly tickets: ReadonlyArray<string>
  readonly messages: ReadonlyArray<string>
}

/** Inserts the users, tickets and messages `events` name (those that do not exist yet); returns what it inserted. */
export const insertEntities = (events: ReadonlyArray<DomainEvent>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = rowsOf(events)
    const users = [...rows.users]
    const tickets = [...rows.tickets]
    const messages = [...rows.messages]
    const insertedUsers = users.length === 0 ? [] : yield* sql.unsafe<{ id: string }>(
      `INSERT INTO users (id, username, password_hash, role)
       SELECT id, 'entity-' || id, 'not-a-hash', 'customer' FROM unnest($1::uuid[]) AS u(id)
       ON CONFLICT DO NOTHING RETURNING id`,
      [users]
    )
    const insertedTickets = tickets.length === 0 ? [] : yield* sql.unsafe<{ id: string }>(
      `INSERT INTO tickets (id, title, description, owner_id)
       SELECT id, 'Entity ticket', 'made by a test', owner_id FROM unnest($1::uuid[], $2::uuid[]) AS t(id, owner_id)
       ON CONFLICT DO NOTHING RETURNING id`,
      [tickets.map(([id]) => id), tickets.map(([, owner]) => owner)]
    )
    const insertedMessages = messages.length === 0 ? [] : yield* sql.unsafe<{ id: string }>(
      `INSERT INTO messages (id, ticket_id, author_id, content)
       SELECT id, ticket_id, author_id, 'made by a test'
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS m(id, ticket_id, author_id)
       ON CONFLICT DO NOTHING RETURNING id`,
      [messages.map(([id]) => id), messages.map(([, m]) => m.ticketId), messages.map(([, m]) => m.authorId)]
    )
    const inserted: Inserted = {
      users: insertedUsers.map((r) => r.id),
      tickets: insertedTickets.map((r) => r.id),
      messages: insertedMessages.map((r) => r.id)
    }
    return inserted
  }).pipe(Effect.orDie)

export const deleteEntities = (inserted: Inserted) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (inserted.messages.length > 0) {
      yield* sql.unsafe("DELETE FROM messages WHERE id = ANY($1::uuid[])", [[...inserted.messages]])
    }
    if (inserted.tickets.length > 0) {
      yield* sql.unsafe("DELETE FROM tickets WHERE id = ANY($1::uuid[])", [[...inserted.tickets]])
    }
    if (inserted.users.length > 0) {
      yield* sql.unsafe("DELETE FROM users WHERE id = ANY($1::uuid[])", [[...inserted.users]])
    }
  }).pipe(Effect.orDie)

/** The entities of `events`, for the current scope. */
export const withEntities = (events: ReadonlyArray<DomainEvent>) =>
  Effect.acquireRelease(insertEntities(events), deleteEntities)
