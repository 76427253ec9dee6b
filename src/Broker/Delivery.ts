/**
 * What the processor sees of a broker message. A Delivery carries its own
 * settle operations, bound to the channel it arrived on: after a reconnect a
 * delivery from the old channel can never be acked on the new one (its ack
 * becomes a no-op and the broker redelivers it, which idempotency absorbs).
 */
import { type Effect, Either } from "effect"
import { decodeEventJson, type DomainEvent } from "../Domain/Events.js"
import type { BrokerError } from "./Amqp.js"

/**
 * The attempt counter travels in `opsdesk-retry-count`. The seed calls it
 * `x-retry-count`, but RabbitMQ reserves `x-` names for the broker, so we
 * write ours and still read the seed's.
 */
export const RETRY_HEADER = "opsdesk-retry-count"
export const SEED_RETRY_HEADER = "x-retry-count"

/** Headers written on messages sent to the DLQ. */
export const DLQ_HEADERS = {
  reason: "opsdesk-error",
  kind: "opsdesk-error-kind",
  attempts: "opsdesk-attempts",
  routingKey: "opsdesk-original-routing-key",
  queue: "opsdesk-original-queue",
  failedAt: "opsdesk-failed-at"
} as const

export type FailureKind = "poison" | "failed"

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
  readonly retryLater: (options: { readonly delayMs: number; readonly attempt: number; readonly error: string }) => Effect.Effect<void, BrokerError>
  /** Publishes a copy to the DLQ with the reason in its headers (confirmed). */
  readonly deadLetter: (options: { readonly kind: FailureKind; readonly reason: string; readonly attempts: number }) => Effect.Effect<void, BrokerError>
}

/**
 * Retries already made. Missing, negative or non-numeric values count as 0;
 * absurdly large ones are clamped so the message simply has no retries left.
 */
export const attemptOf = (headers: Readonly<Record<string, unknown>>, maxRetries: number): number => {
  const raw = headers[RETRY_HEADER] ?? headers[SEED_RETRY_HEADER]
  const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\s*\d+\s*$/.test(raw) ? Number(raw) : typeof raw === "bigint" ? Number(raw) : 0
  if (Number.isNaN(n) || n < 0) return 0 // Infinity is clamped below
  return Math.min(Math.floor(n), maxRetries)
}

/** The body as text, without copying it (amqplib hands us a Buffer already). */
const bodyText = (body: Uint8Array): string =>
  (Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)).toString("utf8")

export const decodeDelivery = (delivery: Delivery): Either.Either<DomainEvent, string> => {
  const decoded = decodeEventJson(bodyText(delivery.body))
  return Either.isRight(decoded) ? decoded : Either.left(decoded.left.slice(0, 1000))
}
