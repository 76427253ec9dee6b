/**
 * In-app notifications: the `in_app` rows the worker's claim statement writes
 * (src/Worker/EventStore.ts), as their recipient reads them. Every query is
 * scoped to the caller: another user's notification is not found, never
 * forbidden, so ids reveal nothing. Newest first, keyset-paginated on the id
 * (a bigserial: the order rows were written in); the stream (Stream.ts) reads
 * the same rows oldest first, after an id.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { ValidationError, wireTag } from "../Kit/Errors.js"
import { Cursor, DEFAULT_LIMIT, Limit } from "../Kit/Pagination.js"
import { Timestamp } from "../Kit/Schemas.js"
import { traced } from "../Observability/Span.js"

const MAX_ID = 9_223_372_036_854_775_807n

/** A notification id: a positive 64-bit integer, as a decimal string (JSON numbers lose precision past 2^53). */
export const NotificationId = Schema.String.pipe(
  Schema.pattern(/^[1-9][0-9]{0,18}$/, { message: () => "must be a notification id (a positive integer)" }),
  Schema.filter((s) => BigInt(s) <= MAX_ID, { message: () => "must be a notification id (a positive integer)" })
).annotations({ description: "Notification id (a positive integer, as a string)" })

export const Notification = Schema.Struct({
  id: NotificationId,
  eventId: Schema.String.annotations({ description: "The domain event that caused it" }),
  eventType: Schema.String.annotations({ description: "`ticket.created`, `message.sent`, …" }),
  body: Schema.String,
  createdAt: Timestamp,
  readAt: Schema.NullOr(Timestamp).annotations({ description: "When the recipient marked it read; null: unread" })
}).annotations({ identifier: "Notification" })
export type Notification = typeof Notification.Type

export const NotificationPage = Schema.Struct({
  items: Schema.Array(Notification),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "NotificationPage" })
export type NotificationPage = typeof NotificationPage.Type

export const ListNotificationsParams = Schema.Struct({
  unread: Schema.optional(
    Schema.BooleanFromString.annotations({ description: "`true`: unread ones only; `false` (the default): all" })
  ),
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListNotificationsParams = typeof ListNotificationsParams.Type

export const NotificationIdPath = Schema.Struct({ id: NotificationId })

export const UnreadCount = Schema.Struct({ unread: Schema.Int }).annotations({ identifier: "UnreadCount" })

export const ReadAllResult = Schema.Struct({
  marked: Schema.Int.annotations({ description: "How many unread notifications this marked read" })
}).annotations({ identifier: "ReadAllResult" })

/** No such notification among the caller's own (another user's answers the same). */
export class NotificationNotFound extends Schema.TaggedError<NotificationNotFound>("NotificationNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {
  static of(id: string) {
    return new NotificationNotFound({ message: `notification ${id} not found` })
  }
}

// A cursor is the base64url of `n<id>`: opaque to clients, and never mistaken for another listing's.
const encodeCursor = (id: string) => Buffer.from(`n${id}`).toString("base64url")

const INVALID_CURSOR = new ValidationError({ field: "cursor", message: "cursor is not valid" })

const afterCursor = (cursor: string | undefined): Effect.Effect<string | undefined, ValidationError> => {
  if (cursor === undefined) return Effect.succeed(undefined)
  const text = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, "base64url").toString("utf8") : ""
  const id = text.startsWith("n") ? text.slice(1) : ""
  return Schema.is(NotificationId)(id) ? Effect.succeed(id) : Effect.fail(INVALID_CURSOR)
}

export interface NotificationRow {
  readonly id: string
  readonly eventId: string
  readonly eventType: string
  readonly body: string
  readonly createdAt: Date
  readonly readAt: Date | null
}

export const toNotification = (row: NotificationRow): Notification => ({
  id: row.id,
  eventId: row.eventId,
  eventType: row.eventType,
  body: row.body,
  createdAt: row.createdAt.toISOString(),
  readAt: row.readAt === null ? null : row.readAt.toISOString()
})

/**
 * `id` comes out as text (a bigint is past JavaScript's safe integers), so
 * every ORDER BY names `notifications.id`: a bare `id` there would mean this
 * text column, and "10" sorts before "9".
 */
const COLUMNS = "id::text AS id, event_id, event_type, body, created_at, read_at"

export class InAppNotifications extends Effect.Service<InAppNotifications>()("OpsDesk/Notifications/InApp", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)

    /** The recipient's in-app notifications, newest first. */
    const list = (recipientId: string, params: ListNotificationsParams) =>
      Effect.gen(function*() {
        const after = yield* afterCursor(params.cursor)
        const limit = params.limit ?? DEFAULT_LIMIT
        const rows = yield* sql<NotificationRow>`SELECT ${columns} FROM notifications
          WHERE recipient_id = ${recipientId} AND channel = 'in_app'
          ${params.unread === true ? sql`AND read_at IS NULL` : sql``}
          ${after === undefined ? sql`` : sql`AND id < ${after}::bigint`}
          ORDER BY notifications.id DESC LIMIT ${limit + 1}`.pipe(Effect.orDie)
        const more = rows.length > limit
        const page = more ? rows.slice(0, limit) : rows
        const last = page[page.length - 1]
        const result: NotificationPage = {
          items: page.map(toNotification),
          nextCursor: more && last !== undefined ? encodeCursor(last.id) : null
        }
        return result
      }).pipe(traced("InApp.list"))

    /** Marks one read (the first time only: `readAt` keeps the first reading); the notification as it now is. */
    const markRead = (recipientId: string, id: string) =>
      sql<NotificationRow>`WITH marked AS (
          UPDATE notifications SET read_at = now()
          WHERE id = ${id}::bigint AND recipient_id = ${recipientId} AND channel = 'in_app' AND read_at IS NULL
          RETURNING ${columns}
        )
        SELECT * FROM marked
        UNION ALL
        SELECT ${columns} FROM notifications
        WHERE id = ${id}::bigint AND recipient_id = ${recipientId} AND channel = 'in_app'
          AND NOT EXISTS (SELECT 1 FROM marked)`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) =>
          Option.match(Option.fromNullable(rows[0]), {
            onNone: () => Effect.fail(NotificationNotFound.of(id)),
            onSome: (row) => Effect.succeed(toNotification(row))
          })
        ),
        traced("InApp.markRead")
      )

    /** Marks every unread one read; how many that was. */
    const markAllRead = (recipientId: string) =>
      sql<{ readonly marked: number }>`WITH marked AS (
          UPDATE notifications SET read_at = now()
          WHERE recipient_id = ${recipientId} AND channel = 'in_app' AND read_at IS NULL
          RETURNING 1
        ) SELECT count(*)::int AS marked FROM marked`.pipe(
        Effect.map((rows) => ({ marked: rows[0]?.marked ?? 0 })),
        Effect.orDie,
        traced("InApp.markAllRead")
      )

    const unreadCount = (recipientId: string) =>
      sql<{ readonly unread: number }>`SELECT count(*)::int AS unread FROM notifications
        WHERE recipient_id = ${recipientId} AND channel = 'in_app' AND read_at IS NULL`.pipe(
        Effect.map((rows) => ({ unread: rows[0]?.unread ?? 0 })),
        Effect.orDie,
        traced("InApp.unreadCount")
      )

    /**
     * For the stream, oldest first, at most `limit`: the recipient's rows with
     * an id above `above` (when given) and, when `ranges` are given, only those
     * in the id ranges a NOTIFY named (rows that committed after a higher id
     * was already sent: ids are taken at insert, transactions commit in their
     * own order). The next page starts above the last row of this one.
     */
    const since = (
      recipientId: string,
      options: {
        readonly above?: string | undefined
        readonly ranges?: ReadonlyArray<readonly [string, string]> | undefined
      },
      limit: number
    ) => {
      const { above, ranges } = options
      if (ranges !== undefined && ranges.length === 0) return Effect.succeed<ReadonlyArray<NotificationRow>>([])
      return sql<NotificationRow>`SELECT ${columns} FROM notifications
        WHERE recipient_id = ${recipientId} AND channel = 'in_app'
        ${above === undefined ? sql`` : sql`AND id > ${above}::bigint`}
        ${
        ranges === undefined ? sql`` : sql`AND EXISTS (
          SELECT 1 FROM unnest(${ranges.map((r) => r[0])}::bigint[], ${ranges.map((r) => r[1])}::bigint[]) AS r(lo, hi)
          WHERE id BETWEEN r.lo AND r.hi)`
      }
        ORDER BY notifications.id LIMIT ${limit}`.pipe(traced("InApp.since"))
    }

    /** The recipient's newest in-app id ("0" without any): where a stream without Last-Event-ID starts. */
    const newestId = (recipientId: string) =>
      sql<{ readonly id: string | null }>`SELECT max(id)::text AS id FROM notifications
        WHERE recipient_id = ${recipientId} AND channel = 'in_app'`.pipe(
        Effect.map((rows) => rows[0]?.id ?? "0"),
        traced("InApp.newestId")
      )

    return { list, markRead, markAllRead, unreadCount, since, newestId } as const
  })
}) {}
