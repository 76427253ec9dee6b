/**
 * Fault injection, off by default. It lets the seed's "simulate failure" step
 * (and the chaos and bench scripts) make handlers fail without editing code:
 *   WORKER_FAULT_EVENTS=message.sent          every message.sent fails, always
 *   WORKER_FAULT_FIRST_ATTEMPT_PERCENT=1      1% of events fail on their first try only
 */
import { Context, Data, Effect, Layer } from "effect"
import { WorkerFaultsConfig } from "../Config.js"
import type { DomainEvent } from "../Domain/Events.js"

export class HandlerError extends Data.TaggedError("HandlerError")<{ readonly message: string }> {}

export class Faults extends Context.Tag("OpsDesk/Worker/Faults")<Faults, {
  /** False when no fault is configured: the processor then skips the check entirely. */
  readonly enabled?: boolean
  readonly check: (event: DomainEvent, attempt: number) => Effect.Effect<void, HandlerError>
}>() {}

/** Stable per event: the same event fails (or not) on every worker and redelivery. */
export const faultBucket = (eventId: string) => {
  let h = 0
  for (let i = 0; i < eventId.length; i++) h = (h * 31 + eventId.charCodeAt(i)) | 0
  return Math.abs(h) % 10_000
}

const none = Faults.of({ enabled: false, check: () => Effect.void })
export const FaultsNone = Layer.succeed(Faults, none)

export const FaultsLive = Layer.effect(
  Faults,
  Effect.gen(function*() {
    const { events, firstAttemptPercent: percent } = yield* WorkerFaultsConfig
    const always = new Set(events.map((e) => e.trim()).filter((e) => e.length > 0))
    if (always.size === 0 && percent === 0) return none
    yield* Effect.logWarning(
      `Fault injection on: always failing [${[...always].join(", ")}], ${percent}% of first attempts`
    )
    return Faults.of({
      enabled: true,
      check: (event, attempt) =>
        always.has(event.event) || (attempt === 0 && faultBucket(event.eventId) < percent * 100)
          ? Effect.fail(new HandlerError({ message: "Simulated failure" }))
          : Effect.void
    })
  })
)
