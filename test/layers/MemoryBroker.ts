/**
 * An in-memory model of the worker's side of RabbitMQ, producing the
 * `Delivery` objects the processor settles.
 *
 *  - `ready`: messages waiting in their queues (one FIFO across the four
 *    queues, as the consumer merges them into one inbox anyway);
 *  - `unacked`: delivered and not yet acked, per delivery tag;
 *  - `retry`: copies published by `retryLater`, held until the test calls
 *    `releaseRetries` (the TTL retry queue dead-lettering them back);
 *  - `dlq`: copies published by `deadLetter`, with their headers.
 *
 * Settling behaves like `AmqpDelivery` (src/Broker/AmqpDelivery.ts): `ack`
 * and `requeue` are once-only and become no-ops once the channel (epoch) is
 * gone; a copy gets its headers from the same functions (src/Broker/Headers.ts).
 * A copy whose header table amqplib would not encode (over its 64 KiB buffer,
 * or a value it has no type for; `tableSize` stands in for its encoder) is not
 * published: a retry copy fails with UnencodableCopy, a DLQ copy goes with its
 * headers trimmed (`trimHeaders`) and the dropped ones named in its reason.
 *
 * Failure modes:
 *   publishEvent twice            duplicate publishes (same eventId)
 *   loseNextAcks(k)               the next k acks never reach the broker (a crash after processing, before the ack)
 *   crash()                       the channel dies: every unacked message is redelivered (redelivered = true)
 *   failNextRetryLater(k)         the next k retry publishes are not confirmed (BrokerError)
 *   failNextDeadLetter(k)         the next k DLQ publishes are not confirmed (BrokerError)
 */
import { Effect, Either, Ref } from "effect"
import { BrokerError } from "../../src/Broker/Amqp.js"
import { type Delivery, UnencodableCopy } from "../../src/Broker/Delivery.js"
import {
  deadLetterHeaders,
  describeDropped,
  type FailureKind,
  type Fingerprints,
  retryHeaders,
  tableSize,
  trimHeaders
} from "../../src/Broker/Headers.js"
import { queueFor } from "../../src/Broker/Topology.js"
import type { DomainEvent } from "../../src/Domain/Events.js"

/** amqplib's header encoding buffer. */
const ENCODING_BUFFER = 65_536
const encodable = (headers: Readonly<Record<string, unknown>>) => {
  const size = tableSize(headers)
  return size !== undefined && size <= ENCODING_BUFFER
}

export interface BrokerMessage {
  /** Identity of this physical message; a copy (retry, DLQ) gets a new one. */
  readonly id: number
  /** The message this one is a copy of (retry or DLQ copy), if any. */
  readonly copyOf: number | undefined
  readonly queue: string
  readonly routingKey: string
  readonly body: Uint8Array
  readonly messageId: string | undefined
  readonly headers: Readonly<Record<string, unknown>>
  readonly redelivered: boolean
}

export interface RetryEntry {
  readonly message: BrokerMessage
  readonly delayMs: number
  readonly attempt: number
  readonly error: string
}

export type DeliveryStatus = "unacked" | "acked" | "requeued" | "ack-lost"

export interface DeliveryRecord {
  readonly tag: number
  readonly epoch: number
  readonly message: BrokerMessage
  readonly status: DeliveryStatus
  /** A retryLater or deadLetter for it was not confirmed: it is meant to stay unacked. */
  readonly publishFailed: boolean
}

export type BrokerOp =
  | { readonly op: "ack" | "requeue" | "ack-lost"; readonly tag: number; readonly message: BrokerMessage }
  | {
    readonly op: "retryLater"
    readonly tag: number
    readonly message: BrokerMessage
    readonly delayMs: number
    readonly attempt: number
    readonly error: string
  }
  | {
    readonly op: "deadLetter"
    readonly tag: number
    readonly message: BrokerMessage
    readonly kind: FailureKind
    readonly reason: string
    readonly attempts: number
    readonly fingerprints: Fingerprints | undefined
  }
  | { readonly op: "retryLater-failed" | "deadLetter-failed"; readonly tag: number; readonly message: BrokerMessage }
  /** A retry copy that could not be encoded: nothing published. */
  | { readonly op: "retryLater-unencodable"; readonly tag: number; readonly message: BrokerMessage }

export interface BrokerState {
  readonly nextId: number
  readonly nextTag: number
  readonly epoch: number
  readonly ready: ReadonlyArray<BrokerMessage>
  readonly unacked: ReadonlyMap<number, BrokerMessage>
  readonly deliveries: ReadonlyMap<number, DeliveryRecord>
  readonly retry: ReadonlyArray<RetryEntry>
  readonly dlq: ReadonlyArray<BrokerMessage>
  readonly ops: ReadonlyArray<BrokerOp>
  readonly published: number
  readonly crashes: number
  readonly failRetryLater: number
  readonly failDeadLetter: number
  readonly loseAcks: number
}

const initial: BrokerState = {
  nextId: 1,
  nextTag: 1,
  epoch: 0,
  ready: [],
  unacked: new Map(),
  deliveries: new Map(),
  retry: [],
  dlq: [],
  ops: [],
  published: 0,
  crashes: 0,
  failRetryLater: 0,
  failDeadLetter: 0,
  loseAcks: 0
}

const encoder = new TextEncoder()
export const encodeBody = (text: string): Uint8Array => encoder.encode(text)

/** The eventId in a message body (canonical: in lower case), if the body is a JSON object with a string `eventId`. */
export const eventIdOf = (message: BrokerMessage): string | undefined => {
  try {
    const json: unknown = JSON.parse(new TextDecoder().decode(message.body))
    if (typeof json === "object" && json !== null && "eventId" in json && typeof json.eventId === "string") {
      return json.eventId.toLowerCase()
    }
  } catch {
    // not JSON
  }
  return undefined
}

export interface RawPublish {
  readonly body: Uint8Array
  readonly routingKey: string
  /** Defaults to the routing key's queue (`<routingKey>.queue`). */
  readonly queue?: string
  readonly messageId?: string | undefined
  readonly headers?: Readonly<Record<string, unknown>>
}

export class MemoryBroker extends Effect.Service<MemoryBroker>()("OpsDesk/Test/MemoryBroker", {
  effect: Effect.gen(function*() {
    const state = yield* Ref.make<BrokerState>(initial)

    /** Runs a pure transition that may fail with a BrokerError. */
    const transition = <A>(f: (s: BrokerState) => [Either.Either<A, BrokerError>, BrokerState]) =>
      Ref.modify(state, f).pipe(Effect.flatMap(Either.match({ onLeft: Effect.fail, onRight: Effect.succeed })))

    const publishRaw = (input: RawPublish) =>
      Ref.modify(state, (s): [number, BrokerState] => {
        const message: BrokerMessage = {
          id: s.nextId,
          copyOf: undefined,
          queue: input.queue ?? `${input.routingKey}.queue`,
          routingKey: input.routingKey,
          body: input.body,
          messageId: input.messageId,
          headers: { ...(input.headers ?? {}) },
          redelivered: false
        }
        return [message.id, { ...s, nextId: s.nextId + 1, published: s.published + 1, ready: [...s.ready, message] }]
      })

    const publishEvent = (
      event: DomainEvent,
      options?: {
        readonly headers?: Readonly<Record<string, unknown>>
        readonly messageId?: string
        /** Written in the body instead of the event's own (another letter case, say). */
        readonly eventId?: string
        /** Another queue than the event's own (misrouted). */
        readonly queue?: string
      }
    ) =>
      publishRaw({
        body: encodeBody(
          JSON.stringify(options?.eventId === undefined ? event : { ...event, eventId: options.eventId })
        ),
        routingKey: event.event,
        queue: options?.queue ?? queueFor(event.event),
        messageId: options?.messageId ?? options?.eventId ?? event.eventId,
        headers: options?.headers ?? {}
      })

    const makeDelivery = (tag: number, epoch: number, message: BrokerMessage): Delivery => {
      /** Once-only settle on a live channel, like `settle` in AmqpDelivery.ts. */
      const settle = (op: "ack" | "requeue") =>
        Ref.update(state, (s): BrokerState => {
          const record = s.deliveries.get(tag)
          if (record === undefined || record.status !== "unacked" || s.epoch !== epoch) return s
          const deliveries = new Map(s.deliveries)
          if (op === "ack" && s.loseAcks > 0) {
            deliveries.set(tag, { ...record, status: "ack-lost" })
            return { ...s, deliveries, loseAcks: s.loseAcks - 1, ops: [...s.ops, { op: "ack-lost", tag, message }] }
          }
          const unacked = new Map(s.unacked)
          unacked.delete(tag)
          if (op === "ack") {
            deliveries.set(tag, { ...record, status: "acked" })
            return { ...s, unacked, deliveries, ops: [...s.ops, { op: "ack", tag, message }] }
          }
          deliveries.set(tag, { ...record, status: "requeued" })
          return {
            ...s,
            unacked,
            deliveries,
            ready: [{ ...message, redelivered: true }, ...s.ready],
            ops: [...s.ops, { op: "requeue", tag, message }]
          }
        })

      /** A confirmed publish of a copy; fails on a dead channel or an injected failure, writing nothing. */
      const publishCopy = (
        what: "retryLater" | "deadLetter",
        build: (s: BrokerState) => BrokerState
      ) =>
        transition<void>((s) => {
          const failed = (reason: string, consumesFault: boolean): [Either.Either<void, BrokerError>, BrokerState] => {
            const deliveries = new Map(s.deliveries)
            const record = s.deliveries.get(tag)
            if (record !== undefined) deliveries.set(tag, { ...record, publishFailed: true })
            return [
              Either.left(new BrokerError({ message: `Publish not confirmed: ${reason}` })),
              {
                ...s,
                deliveries,
                failRetryLater: consumesFault && what === "retryLater" ? s.failRetryLater - 1 : s.failRetryLater,
                failDeadLetter: consumesFault && what === "deadLetter" ? s.failDeadLetter - 1 : s.failDeadLetter,
                ops: [...s.ops, { op: `${what}-failed`, tag, message }]
              }
            ]
          }
          if (s.epoch !== epoch) return failed("channel closed (simulated)", false)
          if (what === "retryLater" && s.failRetryLater > 0) return failed("NACK from broker (simulated)", true)
          if (what === "deadLetter" && s.failDeadLetter > 0) return failed("NACK from broker (simulated)", true)
          return [Either.right(undefined), build(s)]
        })

      return {
        queue: message.queue,
        routingKey: message.routingKey,
        body: message.body,
        messageId: message.messageId,
        headers: message.headers,
        ack: settle("ack"),
        requeue: settle("requeue"),
        retryLater: ({ attempt, delayMs, error }) => {
          // As the real consumer: the first routing key travels with the copy (it comes back with `<delay>ms.<queue>`).
          const headers = retryHeaders(message.headers, { attempt, routingKey: message.routingKey, error })
          const publish = publishCopy("retryLater", (s) => {
            const copy: BrokerMessage = { ...message, id: s.nextId, copyOf: message.id, redelivered: false, headers }
            return {
              ...s,
              nextId: s.nextId + 1,
              retry: [...s.retry, { message: copy, delayMs, attempt, error }],
              ops: [...s.ops, { op: "retryLater", tag, message, delayMs, attempt, error }]
            }
          })
          // On a live channel, amqplib encodes before it sends: an unencodable copy fails without being sent.
          return Effect.flatMap(
            Ref.get(state),
            (s): Effect.Effect<void, BrokerError | UnencodableCopy> =>
              s.epoch !== epoch || encodable(headers)
                ? publish
                : Ref.update(state, (s): BrokerState => ({
                  ...s,
                  ops: [...s.ops, { op: "retryLater-unencodable", tag, message }]
                })).pipe(
                  Effect.zipRight(Effect.fail(new UnencodableCopy({ message: "header table too large (simulated)" })))
                )
          )
        },
        deadLetter: ({ attempts, fingerprints, kind, reason: given }) =>
          publishCopy("deadLetter", (s) => {
            const failure = {
              kind,
              attempts,
              fingerprints,
              routingKey: message.routingKey,
              queue: message.queue,
              failedAt: new Date()
            }
            let reason = given
            let headers = deadLetterHeaders(message.headers, { ...failure, reason })
            if (!encodable(headers)) {
              // As AmqpDelivery: the copy goes with the headers that fit, and names the others.
              const { dropped, kept } = trimHeaders(message.headers)
              reason = `${given.slice(0, 1000)}; headers dropped to copy it: ${describeDropped(dropped)} (simulated)`
              headers = deadLetterHeaders(kept, { ...failure, reason })
            }
            const copy: BrokerMessage = {
              ...message,
              id: s.nextId,
              copyOf: message.id,
              redelivered: false,
              queue: "tickets.dlq",
              headers
            }
            return {
              ...s,
              nextId: s.nextId + 1,
              dlq: [...s.dlq, copy],
              ops: [...s.ops, { op: "deadLetter", tag, message, kind, reason, attempts, fingerprints }]
            }
          })
      }
    }

    /** Delivers up to `max` ready messages (at least one if any is ready). */
    const take = (max: number) =>
      Ref.modify(state, (s): [ReadonlyArray<Delivery>, BrokerState] => {
        const batch = s.ready.slice(0, Math.max(1, max))
        const unacked = new Map(s.unacked)
        const deliveries = new Map(s.deliveries)
        const out: Array<Delivery> = []
        let tag = s.nextTag
        for (const message of batch) {
          unacked.set(tag, message)
          deliveries.set(tag, { tag, epoch: s.epoch, message, status: "unacked", publishFailed: false })
          out.push(makeDelivery(tag, s.epoch, message))
          tag++
        }
        return [out, { ...s, nextTag: tag, ready: s.ready.slice(batch.length), unacked, deliveries }]
      })

    /** The channel dies: unacked messages go back to the head of their queue, marked redelivered. */
    const crash = Ref.modify(state, (s): [number, BrokerState] => {
      const back = [...s.unacked.entries()].sort(([a], [b]) => a - b).map(([, m]) => ({ ...m, redelivered: true }))
      return [back.length, {
        ...s,
        epoch: s.epoch + 1,
        crashes: s.crashes + 1,
        unacked: new Map(),
        ready: [...back, ...s.ready]
      }]
    })

    /** The retry queues' TTLs expire: every held copy returns to its original queue. */
    const releaseRetries = Ref.modify(state, (s): [number, BrokerState] => {
      const back = s.retry.map((r): BrokerMessage => ({
        ...r.message,
        headers: {
          ...r.message.headers,
          "x-death": [{ queue: `opsdesk.retry.${r.delayMs}ms`, reason: "expired", count: 1 }]
        }
      }))
      return [back.length, { ...s, retry: [], ready: [...s.ready, ...back] }]
    })

    return {
      get: Ref.get(state),
      publishRaw,
      publishEvent,
      take,
      crash,
      releaseRetries,
      failNextRetryLater: (k: number) => Ref.update(state, (s) => ({ ...s, failRetryLater: s.failRetryLater + k })),
      failNextDeadLetter: (k: number) => Ref.update(state, (s) => ({ ...s, failDeadLetter: s.failDeadLetter + k })),
      loseNextAcks: (k: number) => Ref.update(state, (s) => ({ ...s, loseAcks: s.loseAcks + k })),
      /** Nothing ready, nothing unacked, nothing waiting in a retry queue. */
      isDrained: Ref.get(state).pipe(
        Effect.map((s) => s.ready.length === 0 && s.unacked.size === 0 && s.retry.length === 0)
      )
    } as const
  })
}) {}
