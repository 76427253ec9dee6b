/**
 * With Redis unreachable, logins keep working (never a 5xx) and failures are
 * still throttled, by the in-memory fallback of src/Auth/LoginThrottle.ts.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { memoryStore } from "../../src/Auth/LoginThrottle.js"
import type { LoginThrottleConfig } from "../../src/Config.js"
import { makeFixtures, PASSWORD, suffix } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { loginFrom, withSettings } from "../support/LoginThrottle.js"
import { rawRequest, serverPort } from "../support/RawHttp.js"

const MAX_FAILURES = 3

// Port 1 on loopback: nothing listens there, connections are refused at once.
const TestLayer = apiTestLayer().pipe(
  Layer.provide(withSettings({
    REDIS_URL: "redis://127.0.0.1:1",
    LOGIN_MAX_FAILURES: MAX_FAILURES,
    LOGIN_LOCKOUT_BASE_SECONDS: 1,
    LOGIN_LOCKOUT_MAX_SECONDS: 1
  }))
)

const login = (username: string, password: string) =>
  Effect.flatMap(serverPort, (port) =>
    rawRequest(port, {
      method: "POST",
      path: "/v1/auth/login",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password })
    }))

const config: LoginThrottleConfig = {
  maxFailures: 3,
  maxFailuresPerIp: 50,
  lockoutBaseSeconds: 30,
  lockoutMaxSeconds: 900,
  windowSeconds: 900,
  userDelayAfter: 5,
  userDelayBaseMs: 250,
  userDelayMaxMs: 2000,
  keyPrefix: "unit:"
}

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("login throttle with Redis down", (it) => {
  it.scoped("logins answer 200 / 401, never a 5xx, and failures are still throttled (in memory)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const other = yield* fx.user("agent")
      const ok = yield* login(user.username, PASSWORD)
      expect(ok.status, ok.text).toBe(200)
      for (let i = 0; i < MAX_FAILURES; i++) expect((yield* login(user.username, "wrong")).status).toBe(401)
      const locked = yield* login(user.username, PASSWORD)
      expect(locked.status, locked.text).toBe(429)
      expect(locked.headers["retry-after"]).toBe("1")
      // Locked for this address only: from another one the user gets in.
      expect(
        (yield* Effect.flatMap(serverPort, (port) => loginFrom(port, "127.0.0.9", user.username, PASSWORD))).status
      )
        .toBe(200)
      expect((yield* login(other.username, PASSWORD)).status).toBe(200)
      expect((yield* login(`nobody_${suffix()}`, "wrong")).status).toBe(401)
      yield* Effect.sleep("1150 millis")
      expect((yield* login(user.username, PASSWORD)).status).toBe(200)
    }))

  it.effect("the in-memory fallback keeps a bounded number of counters, forgetting the least recently used", () =>
    Effect.gen(function*() {
      const store = memoryStore(config)
      const counter = (name: string) => ({
        failKey: `fail:${name}`,
        lockKey: `lock:${name}`,
        threshold: config.maxFailures
      })
      // The first counter is locked...
      for (let i = 0; i < config.maxFailures; i++) yield* store.begin([counter("first")])
      expect((yield* store.begin([counter("first")])).lockedForMs).toBeGreaterThan(29_000)
      // ...until 10,000 other usernames have pushed it out (the map never grows past its bound).
      for (let i = 0; i < 10_000; i++) yield* store.begin([counter(`filler-${i}`)])
      expect(yield* store.begin([counter("first")])).toEqual({ lockedForMs: 0, setLocks: [false], failures: [1] })
    }))

  it.effect("refunds undo exactly what the refunded attempt did", () =>
    Effect.gen(function*() {
      const store = memoryStore(config)
      const counter = { failKey: "fail:x", lockKey: "lock:x", threshold: 2 }
      expect(yield* store.begin([counter])).toEqual({ lockedForMs: 0, setLocks: [false], failures: [1] })
      const second = yield* store.begin([counter])
      expect(second).toEqual({ lockedForMs: 0, setLocks: [true], failures: [2] })
      expect((yield* store.begin([counter])).lockedForMs).toBeGreaterThan(0)
      // The attempt that set the lock ended without an answer (a 503): its count and its lock are taken back.
      yield* store.refund([counter], second.setLocks)
      const again = yield* store.begin([counter])
      expect(again).toEqual({ lockedForMs: 0, setLocks: [true], failures: [2] })
      yield* store.reset(counter)
      expect(yield* store.begin([counter])).toEqual({ lockedForMs: 0, setLocks: [false], failures: [1] })
    }))
})
