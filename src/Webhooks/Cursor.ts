/**
 * The delivery log's keyset cursor: like Kit/Pagination's, an opaque
 * base64url string over the last row's `<created_at>|<id>`, but the id of a
 * delivery is a bigint, not a UUID.
 */
import { isCursorTimestamp } from "../Kit/Pagination.js"
import type { DeliveryPosition } from "./Repo.js"

// bigint's range: at most 19 digits, and no leading zeros to keep one spelling per id.
const ID_RE = /^(0|[1-9]\d{0,18})$/
const MAX_BIGINT = 9223372036854775807n

export const encodeDeliveryCursor = (position: DeliveryPosition): string =>
  Buffer.from(`${position.ts}|${position.id}`).toString("base64url")

/** Null for anything `encodeDeliveryCursor` could not have produced. */
export const decodeDeliveryCursor = (cursor: string): DeliveryPosition | null => {
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(cursor)) return null
  const [ts, id, ...rest] = Buffer.from(cursor, "base64url").toString("utf8").split("|")
  if (ts === undefined || id === undefined || rest.length > 0) return null
  if (!isCursorTimestamp(ts) || !ID_RE.test(id) || BigInt(id) > MAX_BIGINT) return null
  return { ts, id }
}
