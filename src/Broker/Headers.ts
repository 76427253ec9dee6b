/**
 * Every message header OpsDesk writes or reads, how header values are parsed,
 * and the headers of the copies it publishes (retry, DLQ, replay).
 *
 * RabbitMQ reserves `x-` names for the broker: ours are `opsdesk-*`. The
 * broker's own dead-lettering records (`x-death`, `x-first-death-*`,
 * `x-last-death-*`) describe one trip through a queue and are never copied.
 */

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
  failedAt: "opsdesk-failed-at"
} as const

/** `poison`: the body never decoded; `failed`: the retries are spent. */
export type FailureKind = "poison" | "failed"

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

const copyExcept = (headers: Headers, drop: (name: string) => boolean): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(headers)) if (!drop(k)) out[k] = v
  return out
}

/** A retried copy: the next attempt, the first routing key (it comes back with `<delay>ms.<queue>`), the error. */
export const retryHeaders = (
  headers: Headers,
  retry: { readonly attempt: number; readonly routingKey: string; readonly error: string }
): Record<string, unknown> => ({
  ...copyExcept(headers, (k) => k === SEED_RETRY_HEADER || BROKER_OWNED.test(k)),
  [RETRY_HEADER]: retry.attempt,
  [DLQ_HEADERS.routingKey]: retry.routingKey,
  [LAST_ERROR_HEADER]: retry.error.slice(0, 500)
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
  }
): Record<string, unknown> => ({
  ...copyExcept(headers, (k) => BROKER_OWNED.test(k)),
  [DLQ_HEADERS.reason]: failure.reason.slice(0, 2000),
  [DLQ_HEADERS.kind]: failure.kind,
  [DLQ_HEADERS.attempts]: failure.attempts,
  [DLQ_HEADERS.routingKey]: failure.routingKey,
  [DLQ_HEADERS.queue]: failure.queue,
  [DLQ_HEADERS.failedAt]: failure.failedAt.toISOString()
})

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
