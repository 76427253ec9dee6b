/**
 * What the DLQ tooling reads from a dead-lettered message, as pure functions:
 * the entry shown by `opsdesk dlq list` (and the ops dashboard), whether and
 * where a message can be replayed, and the headers of the replayed copy.
 *
 * A message reaches `tickets.dlq` in one of two ways:
 *  - the worker publishes a copy with the `opsdesk-*` DLQ headers
 *    (src/Worker/Consumer.ts, `deadLetter`): the common case;
 *  - RabbitMQ dead-letters it through a queue's `x-dead-letter-*` arguments
 *    (a consumer that nacks without requeue, as the seed's worker did): then
 *    only the broker's `x-death` / `x-first-death-*` headers describe it.
 * Both are read here.
 */
import { Either, Schema } from "effect"
import { createHash } from "node:crypto"
import type { Message, Options } from "amqplib"
import { EVENT_NAMES, type EventName } from "../Domain/Events.js"
import { DLQ_HEADERS, RETRY_HEADER, SEED_RETRY_HEADER } from "../Broker/Delivery.js"

/** Added to a replayed copy: when it left the DLQ. */
export const REPLAYED_AT_HEADER = "opsdesk-replayed-at"
/** Written by the worker on retried copies (see Consumer.ts `retryLater`); dropped on replay with the retry count. */
export const LAST_ERROR_HEADER = "opsdesk-last-error"

export const DlqEntry = Schema.Struct({
  /** Stable key of this DLQ copy: the same message has the same id in every listing. */
  id: Schema.String,
  /** The body's `event` field when the body is JSON, else the original routing key. */
  event: Schema.NullOr(Schema.String),
  /** The body's `eventId` when the body is JSON, else the AMQP messageId. */
  eventId: Schema.NullOr(Schema.String),
  messageId: Schema.NullOr(Schema.String),
  originalRoutingKey: Schema.NullOr(Schema.String),
  originalQueue: Schema.NullOr(Schema.String),
  attempts: Schema.NullOr(Schema.Number),
  error: Schema.NullOr(Schema.String),
  /** `poison` (never decodable), `failed` (retries spent) or `unknown` (dead-lettered by something else). */
  kind: Schema.Literal("poison", "failed", "unknown"),
  /** ISO-8601; null when the message carries no failure time at all. */
  failedAt: Schema.NullOr(Schema.String),
  ageSeconds: Schema.NullOr(Schema.Number),
  bodyPreview: Schema.String,
  /** Whether `replay` would republish it (see `replayTarget`). */
  replayable: Schema.Boolean
})
export type DlqEntry = typeof DlqEntry.Type
export type EntryKind = DlqEntry["kind"]

const PREVIEW_CHARS = 200

const isEventName = (u: unknown): u is EventName => typeof u === "string" && (EVENT_NAMES as ReadonlyArray<string>).includes(u)

/** Header values arrive as strings, numbers, Buffers (AMQP byte arrays) or tables. */
const text = (u: unknown): string | null =>
  typeof u === "string" ? u : Buffer.isBuffer(u) ? u.toString("utf8") : typeof u === "number" || typeof u === "bigint" ? String(u) : null

const integer = (u: unknown): number | null => {
  const n = typeof u === "number" ? u : typeof u === "bigint" ? Number(u) : typeof u === "string" && /^\s*\d+\s*$/.test(u) ? Number(u) : NaN
  return Number.isFinite(n) ? Math.floor(n) : null
}

interface XDeath {
  readonly queue: string | null
  readonly reason: string | null
  readonly routingKey: string | null
  readonly timeMs: number | null
  readonly count: number | null
}

/** AMQP timestamps are seconds; amqplib hands table timestamps over as `{ "!": "timestamp", value }`. */
const timestampMs = (u: unknown): number | null => {
  const raw = typeof u === "object" && u !== null && "value" in u ? (u as { value: unknown }).value : u
  const n = integer(raw)
  if (n === null || n <= 0) return null
  // A publisher that put Date.now() (milliseconds) in a seconds field.
  return n > 100_000_000_000 ? n : n * 1000
}

/** The broker's most recent dead-lettering record, when RabbitMQ dead-lettered the message itself. */
const xDeath = (headers: Readonly<Record<string, unknown>>): XDeath | null => {
  const list = headers["x-death"]
  const first: unknown = Array.isArray(list) ? list[0] : undefined
  if (typeof first === "object" && first !== null) {
    const d = first as Record<string, unknown>
    const keys = d["routing-keys"]
    return {
      queue: text(d["queue"]),
      reason: text(d["reason"]),
      routingKey: Array.isArray(keys) ? text(keys[0]) : null,
      timeMs: timestampMs(d["time"]),
      count: integer(d["count"])
    }
  }
  const queue = text(headers["x-first-death-queue"])
  return queue === null ? null : { queue, reason: text(headers["x-first-death-reason"]), routingKey: null, timeMs: null, count: null }
}

interface Body {
  readonly event: string | null
  readonly eventId: string | null
}

const parseBody = (content: Buffer): Body => {
  try {
    const json: unknown = JSON.parse(content.toString("utf8"))
    if (typeof json !== "object" || json === null || Array.isArray(json)) return { event: null, eventId: null }
    const o = json as Record<string, unknown>
    return { event: typeof o["event"] === "string" ? o["event"] : null, eventId: typeof o["eventId"] === "string" ? o["eventId"] : null }
  } catch {
    return { event: null, eventId: null }
  }
}

/** Deterministic JSON of decoded AMQP values (sorted keys, Buffers as base64), for hashing. */
const stable = (u: unknown): string => {
  if (Buffer.isBuffer(u)) return JSON.stringify({ $buffer: u.toString("base64") })
  if (typeof u === "bigint") return JSON.stringify(String(u))
  if (Array.isArray(u)) return `[${u.map(stable).join(",")}]`
  if (typeof u === "object" && u !== null) {
    const o = u as Record<string, unknown>
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${stable(o[k])}`).join(",")}}`
  }
  return JSON.stringify(u) ?? "null"
}

/**
 * A DLQ copy's id: a hash of its messageId, headers and body. The worker stamps
 * every copy with its failure time, so two copies of one event (dead-lettered
 * twice) get different ids, while the same copy keeps its id across listings.
 */
export const messageKey = (msg: Message): string =>
  createHash("sha256")
    .update(stable(msg.properties.messageId ?? null))
    .update("\0")
    .update(stable(msg.properties.headers ?? {}))
    .update("\0")
    .update(msg.content)
    .digest("hex")
    .slice(0, 16)

const headersOf = (msg: Message): Readonly<Record<string, unknown>> => msg.properties.headers ?? {}

/** When the message failed: the worker's header, else the broker's x-death time, else the AMQP timestamp. */
export const failedAtMs = (msg: Message): number | null => {
  const headers = headersOf(msg)
  const stamped = text(headers[DLQ_HEADERS.failedAt])
  if (stamped !== null) {
    const t = Date.parse(stamped)
    if (!Number.isNaN(t)) return t
  }
  return xDeath(headers)?.timeMs ?? timestampMs(msg.properties.timestamp)
}

/** The routing key the message was first published with, if anything records it. */
export const originalRoutingKey = (msg: Message): string | null => {
  const headers = headersOf(msg)
  return text(headers[DLQ_HEADERS.routingKey]) ?? xDeath(headers)?.routingKey ?? null
}

export const kindOf = (msg: Message): EntryKind => {
  const kind = text(headersOf(msg)[DLQ_HEADERS.kind])
  if (kind === "poison" || kind === "failed") return kind
  return xDeath(headersOf(msg)) !== null ? "failed" : "unknown"
}

/**
 * Where a replay would send the message: its original routing key (the
 * worker's header, else the broker's x-death record, else the body's `event`),
 * which must be one of the four events bound on `opsdesk.events`. Poison
 * messages are never replayed: their body did not decode, and replaying the
 * same bytes would only dead-letter them again.
 */
export const replayTarget = (msg: Message): Either.Either<EventName, string> => {
  if (kindOf(msg) === "poison") return Either.left("poison message (its body never decoded); fix or discard it")
  const key = originalRoutingKey(msg) ?? parseBody(msg.content).event
  if (key === null) return Either.left("no original routing key and no `event` in the body")
  return isEventName(key) ? Either.right(key) : Either.left(`routing key ${JSON.stringify(key)} is not a known event`)
}

const preview = (content: Buffer) => {
  const s = content.toString("utf8", 0, Math.min(content.length, PREVIEW_CHARS * 4)).replace(/\s+/g, " ")
  return s.length > PREVIEW_CHARS ? `${s.slice(0, PREVIEW_CHARS - 1)}…` : s
}

export const toEntry = (msg: Message, nowMs: number): DlqEntry => {
  const headers = headersOf(msg)
  const body = parseBody(msg.content)
  const death = xDeath(headers)
  const routingKey = originalRoutingKey(msg)
  const failedAt = failedAtMs(msg)
  const messageId = text(msg.properties.messageId)
  const kind = kindOf(msg)
  const workerAttempts = integer(headers[DLQ_HEADERS.attempts])
  return {
    id: messageKey(msg),
    event: body.event ?? routingKey,
    eventId: body.eventId ?? messageId,
    messageId,
    originalRoutingKey: routingKey,
    originalQueue: text(headers[DLQ_HEADERS.queue]) ?? death?.queue ?? null,
    attempts: workerAttempts ?? (death?.count ?? null),
    error: text(headers[DLQ_HEADERS.reason]) ?? (death ? `dead-lettered by RabbitMQ (${death.reason ?? "unknown reason"})` : null),
    kind,
    failedAt: failedAt === null ? null : new Date(failedAt).toISOString(),
    ageSeconds: failedAt === null ? null : Math.max(0, Math.floor((nowMs - failedAt) / 1000)),
    bodyPreview: preview(msg.content),
    replayable: Either.isRight(replayTarget(msg))
  }
}

/** Headers that belong to the failure, not to the event: dropped from a replayed copy. */
const DROPPED = new Set<string>([RETRY_HEADER, SEED_RETRY_HEADER, LAST_ERROR_HEADER, REPLAYED_AT_HEADER, ...Object.values(DLQ_HEADERS)])
const BROKER_HEADERS = /^x-(death|first-death-|last-death-)/

/** Headers of a replayed copy: retry count and failure reset, the rest kept, `opsdesk-replayed-at` added. */
export const replayHeaders = (msg: Message, replayedAt: Date): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(headersOf(msg))) if (!DROPPED.has(k) && !BROKER_HEADERS.test(k)) out[k] = v
  out[REPLAYED_AT_HEADER] = replayedAt.toISOString()
  return out
}

/**
 * Publish options of a replayed copy: persistent, mandatory (an unroutable
 * copy comes back instead of vanishing), and the original's identity
 * (messageId, type, contentType and the other properties).
 */
export const replayOptions = (msg: Message, replayedAt: Date): Options.Publish => ({
  persistent: true,
  mandatory: true,
  messageId: msg.properties.messageId,
  type: msg.properties.type,
  contentType: msg.properties.contentType,
  contentEncoding: msg.properties.contentEncoding,
  appId: msg.properties.appId,
  timestamp: msg.properties.timestamp,
  correlationId: msg.properties.correlationId,
  priority: msg.properties.priority,
  headers: replayHeaders(msg, replayedAt)
})

/** Which DLQ messages an operation acts on. */
export type Selector =
  | { readonly all: true }
  | { readonly eventId: string }
  | { readonly event: string }
  | { readonly id: string }

export const matches = (selector: Selector, entry: DlqEntry): boolean =>
  "all" in selector
    ? true
    : "eventId" in selector
    ? entry.eventId === selector.eventId || entry.messageId === selector.eventId
    : "event" in selector
    ? entry.event === selector.event || entry.originalRoutingKey === selector.event
    : entry.id === selector.id

export const describeSelector = (selector: Selector): string =>
  "all" in selector ? "all messages" : "eventId" in selector ? `eventId ${selector.eventId}` : "event" in selector ? `event ${selector.event}` : `id ${selector.id}`
