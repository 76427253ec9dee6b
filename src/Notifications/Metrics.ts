/**
 * Delivery metrics, by channel (a fixed set: `email`, `webhook`), exported to
 * Prometheus with the rest: every try counted by its outcome, and the time each
 * try took (the sender's work: connect, send, answer).
 */
import { Effect, Metric, MetricBoundaries } from "effect"
import type { DeliveryChannel } from "./Channel.js"

export type AttemptOutcome = "delivered" | "retry" | "failed"

export const attemptsTotal = Metric.counter("opsdesk_delivery_attempts_total", {
  description: "Delivery tries, by channel and outcome (delivered, retry: will be tried again, failed: given up)",
  incremental: true
})

export const attemptSeconds = Metric.histogram(
  "opsdesk_delivery_attempt_seconds",
  MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 14 }),
  "Time one delivery try took, by channel"
)

export const claimedTotal = Metric.counter("opsdesk_delivery_claims_total", {
  description: "Deliveries claimed by a dispatcher, by channel",
  incremental: true
})

const CHANNELS: ReadonlyArray<DeliveryChannel> = ["email", "webhook"]
const OUTCOMES: ReadonlyArray<AttemptOutcome> = ["delivered", "retry", "failed"]

// Tagged once: tagging allocates a new key.
const counters = new Map(
  CHANNELS.flatMap((c) =>
    OUTCOMES.map((o) =>
      [`${c}:${o}`, attemptsTotal.pipe(Metric.tagged("channel", c), Metric.tagged("outcome", o))] as const
    )
  )
)
const timers = new Map(CHANNELS.map((c) => [c, attemptSeconds.pipe(Metric.tagged("channel", c))] as const))
const claims = new Map(CHANNELS.map((c) => [c, claimedTotal.pipe(Metric.tagged("channel", c))] as const))

export const countAttempt = (channel: DeliveryChannel, outcome: AttemptOutcome, millis: number) =>
  Effect.zipRight(
    Metric.increment(counters.get(`${channel}:${outcome}`)!),
    Metric.update(timers.get(channel)!, millis / 1000)
  )

export const countClaims = (channel: DeliveryChannel, n: number) => Metric.incrementBy(claims.get(channel)!, n)
