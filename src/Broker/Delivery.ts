/**
 * What the processor sees of a broker message. A Delivery carries its own
 * settle operations, bound to the channel it arrived on: after a reconnect a
 * delivery from the old channel can never be acked on the new one (its ack
 * becomes a no-op and the broker redelivers it, which idempotency absorbs).
 */
import { type Effect, Either } from "effect"
import { decodeEventJson, type DomainEvent } from "../Domain/Events.js"
import type { BrokerError } from "./Amqp.js"
import type { FailureKind } from "./Headers.js"

export interface Delivery {
  readonly queue: string
  readonly routingKey: string
  readonly body: Uint8Array
  readonly messageId: string | undefined
  readonly headers: Readonly<Record<string, unknown>>
  /** Acks on the channel the message came from; a no-op once that channel is gone. */
  readonly ack: Effect.Effect<void>
  /** Gives the message back to its queue now (shutdown, or a bug); a no-op once the channel is gone. */
  readonly requeue: Effect.Effect<void>
  /** Publishes a copy to the broker-held retry queue for `delayMs` (confirmed). */
  readonly retryLater: (
    options: { readonly delayMs: number; readonly attempt: number; readonly error: string }
  ) => Effect.Effect<void, BrokerError>
  /** Publishes a copy to the DLQ with the reason in its headers (confirmed). */
  readonly deadLetter: (
    options: { readonly kind: FailureKind; readonly reason: string; readonly attempts: number }
  ) => Effect.Effect<void, BrokerError>
}

/** The body as text, without copying it (amqplib hands us a Buffer already). */
const bodyText = (body: Uint8Array): string =>
  (Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)).toString("utf8")

export const decodeDelivery = (delivery: Delivery): Either.Either<DomainEvent, string> => {
  const decoded = decodeEventJson(bodyText(delivery.body))
  return Either.isRight(decoded) ? decoded : Either.left(decoded.left.slice(0, 1000))
}
