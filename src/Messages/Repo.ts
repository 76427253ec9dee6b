/** SQL for messages. Database failures are defects (500). */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { CURSOR_TS, type Position } from "../Kit/Pagination.js"
import { traced } from "../Observability/Span.js"
import { auditInsert } from "../Store/Audit.js"
import type { Message } from "./Domain.js"

interface MessageRow {
  readonly id: string
  readonly ticketId: string
  readonly authorId: string
  readonly content: string
  readonly createdAt: Date
}

interface ListedRow extends MessageRow {
  readonly cursorTs: string
}

export const toMessage = (row: MessageRow): Message => ({
  id: row.id,
  ticketId: row.ticketId,
  authorId: row.authorId,
  content: row.content,
  createdAt: row.createdAt.toISOString()
})

export class MessagesRepo extends Effect.Service<MessagesRepo>()("OpsDesk/Messages/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const cursorTs = sql.literal(CURSOR_TS)

    /** The message's audit row, inserted from the `m` CTE below (Store/Audit.ts). */
    const audit = auditInsert(sql, {
      actorId: sql`m.author_id`,
      action: "message.create",
      entity: "message",
      entityId: sql`m.id`,
      changes: sql`jsonb_build_object('ticketId', m.ticket_id, 'content', m.content)`
    }, sql`m`)

    /**
     * The message and its audit row in one statement. `clock_timestamp()`
     * rather than the transaction's `now()` keeps messages in posting order.
     */
    const insert = (input: { readonly ticketId: string; readonly authorId: string; readonly content: string }) =>
      sql<MessageRow>`WITH m AS (
          INSERT INTO messages (ticket_id, author_id, content, created_at)
          VALUES (${input.ticketId}, ${input.authorId}, ${input.content}, clock_timestamp())
          RETURNING id, ticket_id, author_id, content, created_at
        ), a AS (${audit})
        SELECT id, ticket_id, author_id, content, created_at FROM m`.pipe(
        Effect.map((rows) => toMessage(rows[0]!)),
        traced("MessagesRepo.insert")
      )

    /** Oldest first; fetches one row more than the page to know whether another page follows. */
    const list = (ticketId: string, after: Position | undefined, limit: number) =>
      sql<ListedRow>`SELECT id, ticket_id, author_id, content, created_at, ${cursorTs} AS cursor_ts FROM messages
        WHERE ticket_id = ${ticketId}
        ${after === undefined ? sql`` : sql`AND (created_at, id) > (${after.ts}::timestamptz, ${after.id}::uuid)`}
        ORDER BY created_at, id LIMIT ${limit + 1}`.pipe(Effect.orDie, traced("MessagesRepo.list"))

    return { insert, list } as const
  })
}) {}
