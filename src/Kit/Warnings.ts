/**
 * A warning that repeats while a condition lasts (Redis away, the broker
 * unreachable) is logged at most once per interval, so an outage cannot flood
 * the log at the request or message rate.
 */
import { Effect } from "effect"

export interface RateLimitedWarning {
  /** Logs `message` unless a warning was logged less than the interval ago. */
  readonly warn: (message: string) => Effect.Effect<void>
}

export const rateLimitedWarning = (intervalMs = 5000): RateLimitedWarning => {
  let last = 0
  return {
    warn: (message) =>
      Effect.suspend(() => {
        const now = Date.now()
        if (now - last < intervalMs) return Effect.void
        last = now
        return Effect.logWarning(message)
      })
  }
}
