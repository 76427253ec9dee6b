/**
 * What the processor sees of a broker message. A Delivery carries its own
 * settle operations, bound to the channel it arrived on: after a reconnect a
 * delivery from the old channel can never be acked on the new one (its ack
 * becomes a no-op and the broker redelivers it, which idempotency absorbs).
 */
import { Data, type Effect, Either } from "effect"
import { decodeEventJson, type DomainEvent } from "../Domain/Events.js"
import { clip } from "../Kit/Text.js"
import type { BrokerError } from "./Amqp.js"
import type { FailureKind, Fingerprints } from "./Headers.js"

/** A copy of the message cannot be encoded as it is (its headers are too large, say): it was not published. */
export class UnencodableCopy extends Data.TaggedError("UnencodableCopy")<{ readonly message: string }> {}

export interface DeadLetterOptions {
  readonly kind: FailureKind
  readonly reason: string
  readonly attempts: number
  /** On a `conflict`: what it says and what its id was claimed with. */
  readonly fingerprints?: Fingerprints | undefined
}

export interface Delivery {
  readonly queue: string
  readonly routingKey: string
  readonly body: Uint8Array
  readonly messageId: string | undefined
  readonly headers: Readonly<Record<string, unknown>>
  /**
   * The broker delivered it before and it was not settled then (requeued, or its channel closed
   * with it unacked: a crash, a restart). Absent means no.
   */
  readonly redelivered?: boolean
  /** Acks on the channel the message came from; a no-op once that channel is gone. */
  readonly ack: Effect.Effect<void>
  /** Gives the message back to its queue now (shutdown, or a bug); a no-op once the channel is gone. */
  readonly requeue: Effect.Effect<void>
  /** Publishes a copy to the broker-held retry queue for `delayMs` (confirmed); never sent if it cannot be encoded. */
  readonly retryLater: (
    options: { readonly delayMs: number; readonly attempt: number; readonly error: string }
  ) => Effect.Effect<void, BrokerError | UnencodableCopy>
  /**
   * Publishes a copy to the DLQ with the reason in its headers (confirmed). A
   * copy that cannot be encoded goes with its headers trimmed (see
   * `trimHeaders`), the dropped ones named in the reason.
   */
  readonly deadLetter: (options: DeadLetterOptions) => Effect.Effect<void, BrokerError>
}

/** The body as text, without copying it (amqplib hands us a Buffer already). */
const bodyText = (body: Uint8Array): string =>
  (Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)).toString("utf8")

export const decodeDelivery = (delivery: Delivery): Either.Either<DomainEvent, string> => {
  const decoded = decodeEventJson(bodyText(delivery.body))
  return Either.isRight(decoded) ? decoded : Either.left(clip(decoded.left, 1000))
}
