/**
 * The API under test with its own login-throttle settings and key prefix, so
 * a test file's failed logins never count against another file's (or the
 * development API's) and are deleted when the file is done.
 */
import { Effect, Layer } from "effect"
import { request } from "node:http"
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
export const NO_THROTTLE = {
  LOGIN_MAX_FAILURES: 1_000_000,
  LOGIN_MAX_FAILURES_PER_IP: 1_000_000,
  LOGIN_USER_DELAY_AFTER: 1_000_000
} as const

/**
 * POST /v1/auth/login from a client address of our choosing: any address of
 * 127.0.0.0/8 is the loopback interface on Linux, so a connection bound to
 * 127.0.0.N reaches the server from that address (it sees `::ffff:127.0.0.N`).
 * One connection per login, so concurrent logins really are concurrent.
 */
export const loginFrom = (port: number, from: string, username: string, password: string) =>
  Effect.async<{ readonly status: number; readonly retryAfter: string | undefined; readonly json: unknown }>(
    (resume) => {
      const body = JSON.stringify({ username, password })
      const req = request({
        host: "127.0.0.1",
        port,
        localAddress: from,
        method: "POST",
        path: "/v1/auth/login",
        agent: false,
        timeout: 30_000,
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }
      }, (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (text += chunk))
        res.on("end", () => {
          let json: unknown
          try {
            json = JSON.parse(text)
          } catch {
            json = undefined
          }
          const retryAfter = res.headers["retry-after"]
          resume(Effect.succeed({ status: res.statusCode ?? 0, retryAfter, json }))
        })
      })
      req.on("timeout", () => req.destroy(new Error(`no answer to a login from ${from} within 30 s`)))
      req.on("error", (e) => resume(Effect.die(e)))
      req.end(body)
    }
  )
