/**
 * The API under test with its own login-throttle settings and key prefix, so
 * a test file's failed logins never count against another file's (or the
 * development API's) and are deleted when the file is done.
 */
import { Effect, Layer } from "effect"
import { Redis } from "../../src/Store/Redis.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { configFrom } from "./Env.js"

/** A fresh Redis key prefix for one test file's throttle counters. */
export const throttlePrefix = (name: string) =>
  `opsdesk-test:${name}:${process.pid}-${crypto.randomUUID().slice(0, 8)}:login:`

/** Deletes every key under the prefix (SCAN, so it never blocks Redis). */
export const clearThrottle = (prefix: string) =>
  Effect.flatMap(Redis, (redis) =>
    redis.use(async (client) => {
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500)
        if (keys.length > 0) await client.del(...keys)
        cursor = next
      } while (cursor !== "0")
    })).pipe(Effect.orDie)

/** Layer-wide settings (read through Effect Config while the layer is built), the environment for the rest. */
export const withSettings = (values: Record<string, string | number>) => Layer.setConfigProvider(configFrom(values))

/** Cleans the prefix's keys when the layer is released (and once at start, in case a run died). */
export const ThrottleCleanup = (prefix: string) =>
  Layer.scopedDiscard(Effect.acquireRelease(clearThrottle(prefix), () => clearThrottle(prefix)))

/**
 * The API under test (test/api/support/Layers.ts) with its own throttle
 * prefix, cleaned up with the layer, and any other settings.
 */
export const apiWithOwnThrottle = (name: string, settings: Record<string, string | number> = {}) => {
  const prefix = throttlePrefix(name)
  return ThrottleCleanup(prefix).pipe(
    Layer.provideMerge(apiTestLayer()),
    Layer.provide(withSettings({ LOGIN_THROTTLE_PREFIX: prefix, ...settings }))
  )
}

/** Settings under which no test traffic is ever throttled (fuzzing, timing). */
export const NO_THROTTLE = { LOGIN_MAX_FAILURES: 1_000_000, LOGIN_MAX_FAILURES_PER_IP: 1_000_000 } as const
