/**
 * What the DLQ tooling reads from a dead-lettered message, as pure functions:
 * the entry shown by `opsdesk dlq list` (and the ops dashboard), whether and
 * where a message can be replayed, and the headers of the replayed copy.
 *
 * A message reaches `tickets.dlq` in one of two ways:
 *  - the worker publishes a copy with the `opsdesk-*` DLQ headers
 *    (src/Broker/AmqpDelivery.ts, `deadLetter`): the common case;
 *  - RabbitMQ dead-letters it through a queue's `x-dead-letter-*` arguments
 *    (a consumer that nacks without requeue, as the seed's worker did): then
 *    only the broker's `x-death` / `x-first-death-*` headers describe it.
 * Both are read here.
 */
import { Either, Schema } from "effect"
import { createHash } from "node:crypto"
import {
  deathRecord,
  DLQ_HEADERS,
  headerInteger,
  headerText,
  headerTimestampMs,
  replayHeaders
} from "../Broker/Headers.js"
import { copyOptions, type PublishOptions, type QueuedMessage } from "../Broker/Message.js"
import { EVENT_NAMES, type EventName } from "../Domain/Events.js"

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
  /**
   * `poison` (never decodable, or too large to copy), `failed` (retries spent), `invalid` (on another
   * event's queue, or about a ticket or message that does not exist), `conflict` (its eventId was
   * processed with another payload), `crash-loop` (delivered CRASH_LOOP_LIMIT times without being
   * settled: it took its batch, or the worker, down each time; or a quorum queue's delivery limit
   * dead-lettered it) or `unknown` (dead-lettered by something else).
   */
  kind: Schema.Literal("poison", "failed", "invalid", "conflict", "crash-loop", "unknown"),
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

const isEventName = (u: unknown): u is EventName =>
  typeof u === "string" && (EVENT_NAMES as ReadonlyArray<string>).includes(u)

interface Body {
  readonly event: string | null
  readonly eventId: string | null
}

const parseBody = (content: Buffer): Body => {
  try {
    const json: unknown = JSON.parse(content.toString("utf8"))
    if (typeof json !== "object" || json === null || Array.isArray(json)) return { event: null, eventId: null }
    const o = json as Record<string, unknown>
    return {
      event: typeof o["event"] === "string" ? o["event"] : null,
      eventId: typeof o["eventId"] === "string" ? o["eventId"] : null
    }
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
 * A quorum queue counts every delivery in `x-delivery-count`, a listing's
 * included: the header changes from one look to the next, so it is not part
 * of a message's identity.
 */
const withoutDeliveryCount = (headers: Readonly<Record<string, unknown>>) =>
  Object.fromEntries(Object.entries(headers).filter(([k]) => k !== "x-delivery-count"))

/**
 * A DLQ copy's id: a hash of its messageId, headers (but `x-delivery-count`) and body. The worker stamps
 * every copy with its failure time, so two copies of one event (dead-lettered
 * twice) get different ids, while the same copy keeps its id across listings.
 */
export const messageKey = (msg: QueuedMessage): string =>
  createHash("sha256")
    .update(stable(msg.properties.messageId ?? null))
    .update("\0")
    .update(stable(withoutDeliveryCount(msg.properties.headers ?? {})))
    .update("\0")
    .update(msg.content)
    .digest("hex")
    .slice(0, 16)

const headersOf = (msg: QueuedMessage): Readonly<Record<string, unknown>> => msg.properties.headers ?? {}

/** When the message failed: the worker's header, else the broker's x-death time, else the AMQP timestamp. */
export const failedAtMs = (msg: QueuedMessage): number | null => {
  const headers = headersOf(msg)
  const stamped = headerText(headers[DLQ_HEADERS.failedAt])
  if (stamped !== null) {
    const t = Date.parse(stamped)
    if (!Number.isNaN(t)) return t
  }
  return deathRecord(headers)?.timeMs ?? headerTimestampMs(msg.properties.timestamp)
}

/** The routing key the message was first published with, if anything records it. */
export const originalRoutingKey = (msg: QueuedMessage): string | null => {
  const headers = headersOf(msg)
  return headerText(headers[DLQ_HEADERS.routingKey]) ?? deathRecord(headers)?.routingKey ?? null
}

export const kindOf = (msg: QueuedMessage): EntryKind => {
  const kind = headerText(headersOf(msg)[DLQ_HEADERS.kind])
  if (kind === "poison" || kind === "failed" || kind === "invalid" || kind === "conflict" || kind === "crash-loop") {
    return kind
  }
  const death = deathRecord(headersOf(msg))
  // A quorum queue's x-delivery-limit (src/Broker/Topology.ts) dead-letters with reason `delivery_limit`.
  return death === null ? "unknown" : death.reason === "delivery_limit" ? "crash-loop" : "failed"
}

/** Why a message of this kind is never replayed: the same bytes would be dead-lettered again. */
const NOT_REPLAYABLE: Partial<Record<EntryKind, string>> = {
  poison: "poison message (its body never decoded); fix or discard it",
  invalid:
    "invalid event (it came on another event's queue, or names a ticket or message that does not exist); discard it",
  conflict: "conflicting event (its eventId was already processed with another payload); discard it"
}

/**
 * Where a replay would send the message: its original routing key (the
 * worker's header, else the broker's x-death record, else the body's `event`),
 * which must be one of the four events bound on `opsdesk.events`. Poison,
 * invalid and conflicting messages are never replayed: the worker would only
 * dead-letter them again.
 */
export const replayTarget = (msg: QueuedMessage): Either.Either<EventName, string> => {
  const refused = NOT_REPLAYABLE[kindOf(msg)]
  if (refused !== undefined) return Either.left(refused)
  const key = originalRoutingKey(msg) ?? parseBody(msg.content).event
  if (key === null) return Either.left("no original routing key and no `event` in the body")
  return isEventName(key) ? Either.right(key) : Either.left(`routing key ${JSON.stringify(key)} is not a known event`)
}

const preview = (content: Buffer) => {
  const s = content.toString("utf8", 0, Math.min(content.length, PREVIEW_CHARS * 4)).replace(/\s+/g, " ")
  return s.length > PREVIEW_CHARS ? `${s.slice(0, PREVIEW_CHARS - 1)}…` : s
}

export const toEntry = (msg: QueuedMessage, nowMs: number): DlqEntry => {
  const headers = headersOf(msg)
  const body = parseBody(msg.content)
  const death = deathRecord(headers)
  const routingKey = originalRoutingKey(msg)
  const failedAt = failedAtMs(msg)
  const messageId = headerText(msg.properties.messageId)
  const kind = kindOf(msg)
  const workerAttempts = headerInteger(headers[DLQ_HEADERS.attempts])
  return {
    id: messageKey(msg),
    event: body.event ?? routingKey,
    eventId: body.eventId ?? messageId,
    messageId,
    originalRoutingKey: routingKey,
    originalQueue: headerText(headers[DLQ_HEADERS.queue]) ?? death?.queue ?? null,
    attempts: workerAttempts ?? (death?.count ?? null),
    error: headerText(headers[DLQ_HEADERS.reason]) ??
      (death ? `dead-lettered by RabbitMQ (${death.reason ?? "unknown reason"})` : null),
    kind,
    failedAt: failedAt === null ? null : new Date(failedAt).toISOString(),
    ageSeconds: failedAt === null ? null : Math.max(0, Math.floor((nowMs - failedAt) / 1000)),
    bodyPreview: preview(msg.content),
    replayable: Either.isRight(replayTarget(msg))
  }
}

/**
 * Publish options of a replayed copy: persistent, mandatory (an unroutable
 * copy comes back instead of vanishing), and the original's identity
 * (messageId, type, contentType and the other properties).
 */
export const replayOptions = (msg: QueuedMessage, replayedAt: Date): PublishOptions => ({
  ...copyOptions(msg.properties, replayHeaders(headersOf(msg), replayedAt)),
  mandatory: true
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
  "all" in selector
    ? "all messages"
    : "eventId" in selector
    ? `eventId ${selector.eventId}`
    : "event" in selector
    ? `event ${selector.event}`
    : `id ${selector.id}`
