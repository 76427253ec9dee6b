/**
 * Domain events: one Schema per event, each in the envelope
 * `{ event, eventId, occurredAt, payload, actorId, version }`. The routing key
 * is the event name; docs/EVENTS.md and `/asyncapi.json` (Broker/AsyncApi.ts)
 * are the contract for other consumers.
 *
 * Versions: the envelope carries `version` (ENVELOPE_VERSION). Version 1, the
 * seed's, had no `version` and no `actorId`; the worker upcasts every older
 * envelope to the current one before decoding it (`UPCASTERS`), so events
 * written by an older API (still in an outbox, a retry queue or the DLQ) are
 * processed after an upgrade. A newer version than this code knows is refused
 * with a reason (to the DLQ, replayable once the worker is upgraded).
 *
 * Ids decode in lower case, whatever case they were written in: `eventId` is
 * the idempotency key, and `ABC…` and `abc…` must be one event, not two.
 */
import { Either, ParseResult, Schema } from "effect"
import { createHash } from "node:crypto"
import { MAX_JSON_DEPTH, nestedTooDeep } from "./Json.js"

export const TicketStatus = Schema.Literal("open", "in_progress", "resolved", "closed")
export type TicketStatus = typeof TicketStatus.Type

export const TicketPriority = Schema.Literal("low", "medium", "high", "urgent")
export type TicketPriority = typeof TicketPriority.Type

/** A UUID, canonical: lower case (RFC 9562 output form). */
const Uuid = Schema.compose(Schema.Lowercase, Schema.UUID).annotations({
  jsonSchema: { type: "string", format: "uuid" }
})
/** ISO-8601 timestamps travel as strings, as in the seed (`sentAt: string`). */
const Timestamp = Schema.String.pipe(
  Schema.filter((s) => !Number.isNaN(Date.parse(s)), {
    message: () => "expected an ISO-8601 timestamp",
    jsonSchema: { format: "date-time" }
  })
)

/** The envelope version this code writes and decodes. */
export const ENVELOPE_VERSION = 2

const envelope = <const Name extends string, P extends Schema.Struct.Fields>(name: Name, payload: P) =>
  Schema.Struct({
    event: Schema.Literal(name),
    eventId: Uuid,
    occurredAt: Timestamp,
    payload: Schema.Struct(payload),
    /** Who caused the event (the user whose request wrote it). Since version 2. */
    actorId: Uuid,
    version: Schema.Literal(ENVELOPE_VERSION)
  })

export const TicketCreated = envelope("ticket.created", {
  id: Uuid,
  title: Schema.String,
  description: Schema.String,
  status: TicketStatus,
  priority: TicketPriority,
  ownerId: Uuid,
  assigneeId: Schema.NullOr(Uuid),
  createdAt: Timestamp
})
export type TicketCreated = typeof TicketCreated.Type

export const TicketField = Schema.Literal("title", "description", "priority", "assigneeId")
export type TicketField = typeof TicketField.Type

export const TicketUpdated = envelope("ticket.updated", {
  id: Uuid,
  ownerId: Uuid,
  assigneeId: Schema.NullOr(Uuid),
  changedFields: Schema.Array(TicketField),
  updatedBy: Uuid,
  updatedAt: Timestamp
})
export type TicketUpdated = typeof TicketUpdated.Type

export const TicketStatusChanged = envelope("ticket.status_changed", {
  id: Uuid,
  from: TicketStatus,
  to: TicketStatus,
  changedBy: Uuid,
  changedAt: Timestamp,
  ownerId: Uuid,
  assigneeId: Schema.NullOr(Uuid)
})
export type TicketStatusChanged = typeof TicketStatusChanged.Type

/** Exactly the seed's payload. */
export const MessageSent = envelope("message.sent", {
  id: Uuid,
  ticketId: Uuid,
  authorId: Uuid,
  content: Schema.String,
  sentAt: Timestamp
})
export type MessageSent = typeof MessageSent.Type

export const DomainEvent = Schema.Union(TicketCreated, TicketUpdated, TicketStatusChanged, MessageSent)
export type DomainEvent = typeof DomainEvent.Type
export type EventName = DomainEvent["event"]

export const EVENT_NAMES = [
  "ticket.created",
  "ticket.updated",
  "ticket.status_changed",
  "message.sent"
] as const satisfies ReadonlyArray<EventName>

export const isTicketEvent = (e: DomainEvent): e is TicketCreated | TicketUpdated | TicketStatusChanged =>
  e.event !== "message.sent"

/**
 * JSON with object keys sorted at every level: the canonical form (RFC 8785)
 * of decoded events, whose values are only strings, arrays, objects and null.
 * Hand-written: those values need no more than JSON.stringify and a key sort.
 */
const canonicalJson = (u: unknown): string => {
  if (Array.isArray(u)) return `[${u.map(canonicalJson).join(",")}]`
  if (typeof u === "object" && u !== null) {
    const o = u as Record<string, unknown>
    return `{${
      Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
        .join(",")
    }}`
  }
  return JSON.stringify(u) ?? "null"
}

/**
 * What an event says, as sha256 hex of the canonical JSON of its name and
 * payload (decoded: ids in lower case, unknown fields dropped). Two copies of
 * one event have the same fingerprint, whatever their envelope's time; a
 * reused eventId with another payload has another.
 */
export const eventFingerprint = (event: DomainEvent): string =>
  createHash("sha256").update(canonicalJson({ event: event.event, payload: event.payload })).digest("hex")

/** The payload field that names the event's actor: the envelope's `actorId` since version 2. */
export const ACTOR_FIELD = {
  "ticket.created": "ownerId",
  "ticket.updated": "updatedBy",
  "ticket.status_changed": "changedBy",
  "message.sent": "authorId"
} as const satisfies { readonly [N in EventName]: keyof Extract<DomainEvent, { event: N }>["payload"] }

/** Builds a current envelope with a fresh id and timestamp. */
export const makeEvent = <E extends DomainEvent>(event: E["event"], payload: E["payload"], now = new Date()): E => {
  const actorId = (payload as Record<string, unknown>)[ACTOR_FIELD[event]] as string
  return ({
    event,
    eventId: crypto.randomUUID(),
    occurredAt: now.toISOString(),
    payload,
    actorId,
    version: ENVELOPE_VERSION
  }) as E
}

type JsonObject = Record<string, unknown>

/**
 * Upcasters on the raw JSON, by the version they read: each returns the next
 * version's envelope. Version 1 → 2 adds `version` and takes `actorId` from
 * the payload field that named it. An upcaster never fails: what it cannot
 * fill, the current Schema then reports as missing.
 */
export const UPCASTERS: { readonly [V in number]?: (json: JsonObject, name: EventName) => JsonObject } = {
  1: (json, name) => {
    const payload = json.payload
    const actor = typeof payload === "object" && payload !== null
      ? (payload as JsonObject)[ACTOR_FIELD[name]]
      : undefined
    return { ...json, actorId: actor, version: 2 }
  }
}

/** The envelope brought to ENVELOPE_VERSION, or why it cannot be. */
export const upcast = (json: JsonObject, name: EventName): Either.Either<JsonObject, string> => {
  const declared = json.version === undefined ? 1 : json.version
  if (typeof declared !== "number" || !Number.isSafeInteger(declared) || declared < 1) {
    return Either.left(`Invalid ${name}: version: expected a positive integer, got ${JSON.stringify(declared)}`)
  }
  if (declared > ENVELOPE_VERSION) {
    return Either.left(
      `Unsupported ${name} envelope version ${declared}: this worker reads versions 1 to ${ENVELOPE_VERSION}`
    )
  }
  let current = json
  for (let v = declared; v < ENVELOPE_VERSION; v++) current = UPCASTERS[v]!(current, name)
  return Either.right(current)
}

// Built once: the worker decodes every message with these.
const decoders = {
  "ticket.created": Schema.decodeUnknownEither(TicketCreated, { errors: "all", onExcessProperty: "ignore" }),
  "ticket.updated": Schema.decodeUnknownEither(TicketUpdated, { errors: "all", onExcessProperty: "ignore" }),
  "ticket.status_changed": Schema.decodeUnknownEither(TicketStatusChanged, {
    errors: "all",
    onExcessProperty: "ignore"
  }),
  "message.sent": Schema.decodeUnknownEither(MessageSent, { errors: "all", onExcessProperty: "ignore" })
} satisfies Record<EventName, (u: unknown) => Either.Either<DomainEvent, ParseResult.ParseError>>

const isEventName = (u: unknown): u is EventName => typeof u === "string" && Object.hasOwn(decoders, u)

/**
 * Decodes a message body, with a short reason on failure that names the
 * problem: not JSON, unknown event, or the failing fields of its Schema.
 */
export const decodeEventJson = (body: string): Either.Either<DomainEvent, string> => {
  // The depth check runs only on the way to a rejection: a body that decodes was not walked
  // recursively (extra properties are ignored), and the check costs as much as JSON.parse.
  const tooDeep = () =>
    nestedTooDeep(body) ? Either.left(`Body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels`) : undefined
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch (e) {
    return tooDeep() ?? Either.left(`Body is not valid JSON (${e instanceof Error ? e.message : String(e)})`)
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return tooDeep() ?? Either.left("Body is not a JSON object")
  }
  const name = (json as { event?: unknown }).event
  try {
    if (!isEventName(name)) return tooDeep() ?? Either.left(`Unknown event type: ${JSON.stringify(name) ?? "missing"}`)
    const upcasted = upcast(json as JsonObject, name)
    if (Either.isLeft(upcasted)) return tooDeep() ?? Either.left(upcasted.left)
    const decode: (u: unknown) => Either.Either<DomainEvent, ParseResult.ParseError> = decoders[name]
    const decoded = decode(upcasted.right)
    if (Either.isRight(decoded)) return Either.right(decoded.right)
    return tooDeep() ?? Either.left(
      `Invalid ${name}: ` +
        ParseResult.ArrayFormatter.formatErrorSync(decoded.left).map((i) =>
          `${i.path.join(".") || "(root)"}: ${i.message}`
        ).join("; ")
    )
  } catch (e) {
    // Never a throw (describing a value can overflow the stack, say): that would fail the whole
    // batch, again on every redelivery, instead of dead-lettering this one message.
    return Either.left(
      `Invalid ${isEventName(name) ? name : "event"}: the body cannot be described (${
        e instanceof Error ? e.message : String(e)
      })`
    )
  }
}
