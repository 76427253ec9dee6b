/**
 * Every message header OpsDesk writes or reads, how header values are parsed,
 * and the headers of the copies it publishes (retry, DLQ, replay).
 *
 * RabbitMQ reserves `x-` names for the broker: ours are `opsdesk-*`. The
 * broker's own dead-lettering records (`x-death`, `x-first-death-*`,
 * `x-last-death-*`) describe one trip through a queue and are never copied.
 */
import { clip } from "../Kit/Text.js"

/**
 * The attempt counter. The seed calls it `x-retry-count`; we write ours and
 * still read the seed's.
 */
export const RETRY_HEADER = "opsdesk-retry-count"
export const SEED_RETRY_HEADER = "x-retry-count"
/** On retried copies: the error of the attempt that failed. */
export const LAST_ERROR_HEADER = "opsdesk-last-error"
/** On a copy replayed from the DLQ: when it left the DLQ. */
export const REPLAYED_AT_HEADER = "opsdesk-replayed-at"

/** Written on messages sent to the DLQ (the routing key also travels on retried copies). */
export const DLQ_HEADERS = {
  reason: "opsdesk-error",
  kind: "opsdesk-error-kind",
  attempts: "opsdesk-attempts",
  routingKey: "opsdesk-original-routing-key",
  queue: "opsdesk-original-queue",
  failedAt: "opsdesk-failed-at",
  /** On a `conflict`: the fingerprint of the dead-lettered event's payload... */
  fingerprint: "opsdesk-fingerprint",
  /** ...and the one its eventId was claimed with. */
  claimedFingerprint: "opsdesk-claimed-fingerprint"
} as const

/**
 * Why a message is in the DLQ:
 *  - `poison`: its body never decoded, or it cannot be copied as it is (headers too large);
 *  - `failed`: its retries are spent;
 *  - `invalid`: a well-formed event the worker must not act on: it arrived on another event's queue,
 *    or the ticket or message it names does not exist;
 *  - `conflict`: its eventId was already processed with another payload;
 *  - `crash-loop`: delivered CRASH_LOOP_LIMIT times without being settled (each delivery took its
 *    batch, or the worker, down), or dead-lettered by a quorum queue's delivery limit.
 */
export type FailureKind = "poison" | "failed" | "invalid" | "conflict" | "crash-loop"

/** The two fingerprints of a `conflict`. */
export interface Fingerprints {
  readonly received: string
  readonly claimed: string
}

type Headers = Readonly<Record<string, unknown>>

// ---------------------------------------------------------------------------------------------
// Values. Header values arrive as strings, numbers, bigints, Buffers (AMQP byte arrays) or tables.
// ---------------------------------------------------------------------------------------------

export const headerText = (u: unknown): string | null =>
  typeof u === "string"
    ? u
    : Buffer.isBuffer(u)
    ? u.toString("utf8")
    : typeof u === "number" || typeof u === "bigint"
    ? String(u)
    : null

/** A number, a bigint or a string of digits as a number (Infinity when huge); NaN for anything else. */
const headerNumber = (u: unknown): number =>
  typeof u === "number"
    ? u
    : typeof u === "bigint"
    ? Number(u)
    : typeof u === "string" && /^\s*\d+\s*$/.test(u)
    ? Number(u)
    : NaN

export const headerInteger = (u: unknown): number | null => {
  const n = headerNumber(u)
  return Number.isFinite(n) ? Math.floor(n) : null
}

/** AMQP timestamps are seconds; amqplib hands table timestamps over as `{ "!": "timestamp", value }`. */
export const headerTimestampMs = (u: unknown): number | null => {
  const raw = typeof u === "object" && u !== null && "value" in u ? (u as { value: unknown }).value : u
  const n = headerInteger(raw)
  if (n === null || n <= 0) return null
  // A publisher that put Date.now() (milliseconds) in a seconds field.
  return n > 100_000_000_000 ? n : n * 1000
}

/**
 * Retries already made. Missing, negative or non-numeric values count as 0;
 * absurdly large ones are clamped so the message simply has no retries left.
 */
export const attemptOf = (headers: Headers, maxRetries: number): number => {
  const n = headerNumber(headers[RETRY_HEADER] ?? headers[SEED_RETRY_HEADER])
  if (Number.isNaN(n) || n < 0) return 0 // Infinity is clamped below
  return Math.min(Math.floor(n), maxRetries)
}

// ---------------------------------------------------------------------------------------------
// The broker's dead-lettering records.
// ---------------------------------------------------------------------------------------------

export interface DeathRecord {
  readonly queue: string | null
  readonly reason: string | null
  readonly routingKey: string | null
  readonly timeMs: number | null
  readonly count: number | null
}

/** The broker's most recent dead-lettering record, when RabbitMQ dead-lettered the message itself. */
export const deathRecord = (headers: Headers): DeathRecord | null => {
  const list = headers["x-death"]
  const first: unknown = Array.isArray(list) ? list[0] : undefined
  if (typeof first === "object" && first !== null) {
    const d = first as Record<string, unknown>
    const keys = d["routing-keys"]
    return {
      queue: headerText(d["queue"]),
      reason: headerText(d["reason"]),
      routingKey: Array.isArray(keys) ? headerText(keys[0]) : null,
      timeMs: headerTimestampMs(d["time"]),
      count: headerInteger(d["count"])
    }
  }
  const queue = headerText(headers["x-first-death-queue"])
  return queue === null
    ? null
    : { queue, reason: headerText(headers["x-first-death-reason"]), routingKey: null, timeMs: null, count: null }
}

// ---------------------------------------------------------------------------------------------
// Headers of the copies OpsDesk publishes.
// ---------------------------------------------------------------------------------------------

const BROKER_OWNED = /^x-(death|first-death-|last-death-)/

// Object.fromEntries, not assignment: a header may be called `__proto__`.
const copyExcept = (headers: Headers, drop: (name: string) => boolean): Record<string, unknown> =>
  Object.fromEntries(Object.entries(headers).filter(([k]) => !drop(k)))

/** A retried copy: the next attempt, the first routing key (it comes back with `<delay>ms.<queue>`), the error. */
export const retryHeaders = (
  headers: Headers,
  retry: { readonly attempt: number; readonly routingKey: string; readonly error: string }
): Record<string, unknown> => ({
  ...copyExcept(headers, (k) => k === SEED_RETRY_HEADER || BROKER_OWNED.test(k)),
  [RETRY_HEADER]: retry.attempt,
  [DLQ_HEADERS.routingKey]: clip(retry.routingKey, 255),
  [LAST_ERROR_HEADER]: clip(retry.error, 500)
})

/** A copy sent to the DLQ: the original's headers plus why, when and from where. */
export const deadLetterHeaders = (
  headers: Headers,
  failure: {
    readonly kind: FailureKind
    readonly reason: string
    readonly attempts: number
    readonly routingKey: string
    readonly queue: string
    readonly failedAt: Date
    readonly fingerprints?: Fingerprints | undefined
  }
): Record<string, unknown> => ({
  ...copyExcept(
    headers,
    (k) => BROKER_OWNED.test(k) || k === DLQ_HEADERS.fingerprint || k === DLQ_HEADERS.claimedFingerprint
  ),
  [DLQ_HEADERS.reason]: clip(failure.reason, 2000),
  [DLQ_HEADERS.kind]: failure.kind,
  [DLQ_HEADERS.attempts]: failure.attempts,
  [DLQ_HEADERS.routingKey]: clip(failure.routingKey, 255),
  [DLQ_HEADERS.queue]: failure.queue,
  [DLQ_HEADERS.failedAt]: failure.failedAt.toISOString(),
  ...(failure.fingerprints === undefined ? {} : {
    [DLQ_HEADERS.fingerprint]: failure.fingerprints.received,
    [DLQ_HEADERS.claimedFingerprint]: failure.fingerprints.claimed
  })
})

// ---------------------------------------------------------------------------------------------
// Copies too large to encode.
// ---------------------------------------------------------------------------------------------

/**
 * amqplib encodes a message's header table into a 64 KiB buffer and refuses
 * (throws) beyond it, or when a value has a type it cannot write. A message
 * received with headers just under that size cannot be copied with ours
 * added. Its copy keeps OpsDesk's headers and only the small, encodable ones
 * of the rest, up to these limits.
 */
const TRIMMED_HEADER_MAX_BYTES = 1024
const TRIMMED_HEADERS_MAX_BYTES = 16 * 1024

const TWO_63 = 2 ** 63

/**
 * Whether amqplib can write this number: it guesses a type (a double when it
 * has a fraction below 2^50 or is at least 2^63, else an integer type), and
 * its 64-bit integer path throws on fractions, NaN and values below -2^63.
 */
const encodableNumber = (n: number) =>
  n >= TWO_63 || (Math.abs(n) < 2 ** 50 && Math.floor(n) !== n) || (Number.isInteger(n) && n >= -TWO_63)

/**
 * An upper bound of the bytes amqplib writes for a header value (type tag
 * included), or undefined if it might refuse it. Written here because amqplib
 * exposes no encoder; it follows AMQP 0-9-1's field table encoding, and of the
 * `{ "!": type }` annotations accepts only those amqplib decodes from the wire
 * (timestamps, decimals) with values it can write.
 */
export const encodedSize = (value: unknown): number | undefined => {
  if (value === null) return 1
  switch (typeof value) {
    case "string":
      return 5 + Buffer.byteLength(value)
    case "number":
      return encodableNumber(value) ? 9 : undefined
    case "boolean":
      return 2
    case "object": {
      if (Buffer.isBuffer(value)) return 5 + value.length
      if (Array.isArray(value)) {
        let n = 5
        for (const v of value) {
          const size = encodedSize(v)
          if (size === undefined) return undefined
          n += size
        }
        return n
      }
      const o = value as Record<string, unknown>
      if (Object.hasOwn(o, "!")) {
        const v = o["value"]
        if (o["!"] === "timestamp") return Number.isSafeInteger(v) && (v as number) >= 0 ? 9 : undefined
        if (o["!"] === "decimal" && typeof v === "object" && v !== null) {
          const { digits, places } = v as { readonly places?: unknown; readonly digits?: unknown }
          const ok = Number.isInteger(places) && (places as number) >= 0 && (places as number) < 256 &&
            Number.isInteger(digits) && (digits as number) >= 0 && (digits as number) < 2 ** 32
          return ok ? 6 : undefined
        }
        return undefined
      }
      const size = tableSize(o)
      return size === undefined ? undefined : 1 + size
    }
    default:
      return undefined
  }
}

/** An upper bound of a header table's encoded size, or undefined if amqplib might refuse it. */
export const tableSize = (headers: Headers): number | undefined => {
  let n = 4
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue
    const key = Buffer.byteLength(k)
    const size = encodedSize(v)
    if (size === undefined || key > 255) return undefined
    n += 1 + key + size
  }
  return n
}

/**
 * The headers of a message whose copy could not be encoded, trimmed so that
 * the copy can be: each kept header is encodable and at most 1 KiB, and all
 * of them fit in 16 KiB, OpsDesk's own (`opsdesk-*`) first; `dropped` names
 * the rest. The copy functions above then add the headers they write.
 */
export const trimHeaders = (
  headers: Headers
): { readonly kept: Record<string, unknown>; readonly dropped: ReadonlyArray<string> } => {
  const kept: Array<[string, unknown]> = []
  const dropped: Array<string> = []
  let budget = TRIMMED_HEADERS_MAX_BYTES
  const entries = Object.entries(headers).filter(([, v]) => v !== undefined)
  const ours = entries.filter(([k]) => k.startsWith("opsdesk-"))
  for (const [k, v] of [...ours, ...entries.filter(([k]) => !k.startsWith("opsdesk-"))]) {
    const size = encodedSize(v)
    const cost = size === undefined ? undefined : 1 + Buffer.byteLength(k) + size
    if (cost !== undefined && cost <= TRIMMED_HEADER_MAX_BYTES && cost <= budget) {
      kept.push([k, v])
      budget -= cost
    } else {
      dropped.push(k)
    }
  }
  return { kept: Object.fromEntries(kept), dropped }
}

/** The names of trimmed headers, for a reason: at most 10, each cut to 64 characters. */
export const describeDropped = (dropped: ReadonlyArray<string>): string => {
  const names = dropped.slice(0, 10).map((k) => JSON.stringify(clip(k, 64))).join(", ")
  return dropped.length > 10 ? `${names} and ${dropped.length - 10} more` : names
}

/** Headers that belong to a failure, not to the event: a replayed copy starts afresh without them. */
const FAILURE_HEADERS = new Set<string>([
  RETRY_HEADER,
  SEED_RETRY_HEADER,
  LAST_ERROR_HEADER,
  REPLAYED_AT_HEADER,
  ...Object.values(DLQ_HEADERS)
])

/** A copy replayed from the DLQ: retry count and failure reset, the rest kept, `opsdesk-replayed-at` added. */
export const replayHeaders = (headers: Headers, replayedAt: Date): Record<string, unknown> => ({
  ...copyExcept(headers, (k) => FAILURE_HEADERS.has(k) || BROKER_OWNED.test(k)),
  [REPLAYED_AT_HEADER]: replayedAt.toISOString()
})
