/**
 * SQL for tickets. Database failures are defects (500) unless a caller maps a
 * specific SQLSTATE. Reads that precede a write take the row `FOR UPDATE`, so
 * two concurrent changes to one ticket are serialized.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Option } from "effect"
import type { Role } from "../Auth/CurrentUser.js"
import type { TicketCreated, TicketField, TicketPriority, TicketStatus } from "../Domain/Events.js"
import { CURSOR_TS, type Position } from "../Kit/Pagination.js"
import { traced } from "../Observability/Span.js"
import { eventHeaders, outboxInsert } from "../Outbox/Outbox.js"
import { auditInsert } from "../Store/Audit.js"
import { PREPARED } from "../Store/Sql.js"
import type { Ticket } from "./Domain.js"

export interface TicketRow {
  readonly id: string
  readonly title: string
  readonly description: string
  readonly status: TicketStatus
  readonly priority: TicketPriority
  readonly ownerId: string
  readonly assigneeId: string | null
  readonly createdAt: Date
  readonly updatedAt: Date
}

interface ListedRow extends TicketRow {
  readonly cursorTs: string
}

export const toTicket = (row: TicketRow): Ticket => ({
  id: row.id,
  title: row.title,
  description: row.description,
  status: row.status,
  priority: row.priority,
  ownerId: row.ownerId,
  assigneeId: row.assigneeId,
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString()
})

export interface ListFilter {
  readonly ownerId?: string | undefined
  readonly status?: TicketStatus | undefined
  readonly assigneeId?: string | undefined
  readonly priority?: TicketPriority | undefined
  readonly after?: Position | undefined
  readonly limit: number
}

export type TicketChanges = Partial<{
  readonly title: string
  readonly description: string
  readonly priority: TicketPriority
  readonly assigneeId: string | null
}>

const COLUMNS = "id, title, description, status, priority, owner_id, assignee_id, created_at, updated_at"

export class TicketsRepo extends Effect.Service<TicketsRepo>()("OpsDesk/Tickets/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)
    const cursorTs = sql.literal(CURSOR_TS)
    // The ticket insert is POST /v1/tickets' only statement: parsed and planned once per connection.
    const prepared = sql.literal(PREPARED)
    const first = (rows: ReadonlyArray<TicketRow>) => Option.fromNullable(rows[0])

    /**
     * The ticket, its audit row and its outbox event in ONE statement (one
     * round trip): data-modifying CTEs all run, atomically, or none does. The
     * audit and outbox rows are the writers' own INSERTs (Store/Audit.ts,
     * Outbox/Outbox.ts), inserted from `t`; the row's `traceparent` names this
     * span, the outbox write, so the relay's publish and the worker's handling
     * continue the request's trace.
     */
    const insertWithEvent = (ticket: Ticket, event: TicketCreated): Effect.Effect<void, SqlError> =>
      Effect.flatMap(eventHeaders(), (headers) => {
        const t = sql`t`
        const audit = auditInsert(sql, {
          actorId: ticket.ownerId,
          action: "ticket.create",
          entity: "ticket",
          entityId: sql`t.id`,
          changes: {
            title: ticket.title,
            description: ticket.description,
            priority: ticket.priority,
            status: ticket.status
          }
        }, t)
        return sql`${prepared}WITH t AS (
          INSERT INTO tickets (id, title, description, status, priority, owner_id, assignee_id, created_at, updated_at)
          VALUES (${ticket.id}, ${ticket.title}, ${ticket.description}, ${ticket.status}, ${ticket.priority},
            ${ticket.ownerId}, NULL, ${ticket.createdAt}::timestamptz, ${ticket.createdAt}::timestamptz)
          RETURNING id
        ), a AS (${audit})
        ${outboxInsert(sql, event, headers, t)}`
      }).pipe(
        Effect.asVoid,
        traced("TicketsRepo.insertWithEvent", { attributes: { event: event.event, eventId: event.eventId } })
      )

    const findById = (id: string) =>
      sql<TicketRow>`SELECT ${columns} FROM tickets WHERE id = ${id}`.pipe(
        Effect.map(first),
        Effect.orDie,
        traced("TicketsRepo.findById")
      )

    /** Must run inside a transaction: the lock lasts until it ends. */
    const lockById = (id: string) =>
      sql<TicketRow>`SELECT ${columns} FROM tickets WHERE id = ${id} FOR UPDATE`.pipe(
        Effect.map(first),
        Effect.orDie,
        traced("TicketsRepo.lockById")
      )

    /** Newest first; fetches one row more than the page to know whether another page follows. */
    const list = (filter: ListFilter) => {
      const where = [
        filter.ownerId !== undefined ? sql`owner_id = ${filter.ownerId}` : undefined,
        filter.status !== undefined ? sql`status = ${filter.status}` : undefined,
        filter.assigneeId !== undefined ? sql`assignee_id = ${filter.assigneeId}` : undefined,
        filter.priority !== undefined ? sql`priority = ${filter.priority}` : undefined,
        filter.after !== undefined
          ? sql`(created_at, id) < (${filter.after.ts}::timestamptz, ${filter.after.id}::uuid)`
          : undefined
      ].filter((f) => f !== undefined)
      return sql<ListedRow>`SELECT ${columns}, ${cursorTs} AS cursor_ts FROM tickets
        ${where.length > 0 ? sql`WHERE ${sql.and(where)}` : sql``}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit + 1}`.pipe(
        Effect.orDie,
        traced("TicketsRepo.list")
      )
    }

    const update = (id: string, changes: TicketChanges, updatedAt: Date) =>
      sql<TicketRow>`UPDATE tickets SET ${sql.update({ ...changes, updatedAt })} WHERE id = ${id} RETURNING ${columns}`
        .pipe(
          Effect.map((rows) => rows[0]!),
          Effect.orDie,
          traced("TicketsRepo.update")
        )

    const setStatus = (id: string, status: TicketStatus, updatedAt: Date) =>
      sql<
        TicketRow
      >`UPDATE tickets SET status = ${status}, updated_at = ${updatedAt} WHERE id = ${id} RETURNING ${columns}`.pipe(
        Effect.map((rows) => rows[0]!),
        Effect.orDie,
        traced("TicketsRepo.setStatus")
      )

    const roleOf = (userId: string) =>
      sql<{ readonly role: Role }>`SELECT role FROM users WHERE id = ${userId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.role)),
        Effect.orDie,
        traced("TicketsRepo.roleOf")
      )

    return { insertWithEvent, findById, lockById, list, update, setStatus, roleOf } as const
  })
}) {}

export const FIELD_ORDER: ReadonlyArray<TicketField> = ["title", "description", "priority", "assigneeId"]
