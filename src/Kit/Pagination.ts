/**
 * Keyset pagination. A cursor is an opaque base64url string over the last
 * row's sort key, `<created_at with microseconds, UTC>|<id>`; the timestamp is
 * read from PostgreSQL with `CURSOR_TS` so no precision is lost.
 */
import { Effect, Option, Schema } from "effect"
import { ValidationError } from "./Errors.js"

export const DEFAULT_LIMIT = 20
export const MAX_LIMIT = 100

export const Limit = Schema.NumberFromString.pipe(
  Schema.int(),
  Schema.between(1, MAX_LIMIT, { message: () => `limit must be an integer from 1 to ${MAX_LIMIT}` })
).annotations({
  description: `Page size, 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})`,
  // A query string is text on the wire, but clients (and the OpenAPI document) should see an integer.
  jsonSchema: { type: "integer", minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT }
})

export const Cursor = Schema.String.pipe(Schema.maxLength(256)).annotations({
  description: "Opaque cursor from a previous page's `nextCursor`"
})

/** SQL expression rendering `created_at` as the cursor's timestamp. */
export const CURSOR_TS = `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

export interface Position {
  readonly ts: string
  readonly id: string
}

const TS_RE = /^(\d{4})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export const encodeCursor = (position: Position): string =>
  Buffer.from(`${position.ts}|${position.id}`).toString("base64url")

/** None for anything `encodeCursor` could not have produced. */
export const decodeCursor = (cursor: string): Option.Option<Position> => {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) return Option.none()
  const text = Buffer.from(cursor, "base64url").toString("utf8")
  const bar = text.indexOf("|")
  if (bar < 0) return Option.none()
  const ts = text.slice(0, bar)
  const id = text.slice(bar + 1)
  if (!isCursorTimestamp(ts) || !UUID_RE.test(id)) return Option.none()
  return Option.some({ ts, id: id.toLowerCase() })
}

/**
 * Whether `ts` is a `CURSOR_TS` text of a real calendar instant in
 * PostgreSQL's range (rejects 2024-02-31, month 13, year 0), so a forged
 * cursor is a 400 and never reaches the database as a bad timestamp.
 */
export const isCursorTimestamp = (ts: string): boolean => {
  const match = TS_RE.exec(ts)
  if (match === null || Number(match[1]) < 1) return false
  const date = new Date(ts.slice(0, 23) + "Z")
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 23) === ts.slice(0, 23)
}

const INVALID_CURSOR = new ValidationError({ field: "cursor", message: "cursor is not valid" })

/** Where a page starts: nowhere in particular without a cursor; a 400 for a cursor we did not issue. */
export const positionOf = (cursor: string | undefined): Effect.Effect<Position | undefined, ValidationError> => {
  if (cursor === undefined) return Effect.succeed(undefined)
  const position = decodeCursor(cursor)
  return Option.isSome(position) ? Effect.succeed(position.value) : Effect.fail(INVALID_CURSOR)
}

/**
 * A page from rows fetched with `LIMIT limit + 1`: the extra row only tells
 * that another page follows, and `nextCursor` points after the page's last row.
 */
export const toPage = <Row extends { readonly id: string; readonly cursorTs: string }, A>(
  rows: ReadonlyArray<Row>,
  limit: number,
  f: (row: Row) => A
): { readonly items: ReadonlyArray<A>; readonly nextCursor: string | null } => {
  const more = rows.length > limit
  const page = more ? rows.slice(0, limit) : rows
  const last = page[page.length - 1]
  return {
    items: page.map(f),
    nextCursor: more && last !== undefined ? encodeCursor({ ts: last.cursorTs, id: last.id }) : null
  }
}
