/**
 * Failed-login throttling (src/Auth/LoginThrottle.ts) through the real server
 * and Redis, with short windows: 3 failures per username (12 per address)
 * lock for 1 s, doubling up to 2 s.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { makeFixtures, PASSWORD, suffix } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { clearThrottle, ThrottleCleanup, throttlePrefix, withSettings } from "../support/LoginThrottle.js"
import { type RawReply, rawRequest, serverPort } from "../support/RawHttp.js"

const PREFIX = throttlePrefix("throttle")
const MAX_FAILURES = 3
const MAX_FAILURES_PER_IP = 12

const TestLayer = ThrottleCleanup(PREFIX).pipe(
  Layer.provideMerge(apiTestLayer()),
  Layer.provide(withSettings({
    LOGIN_THROTTLE_PREFIX: PREFIX,
    LOGIN_MAX_FAILURES: MAX_FAILURES,
    LOGIN_MAX_FAILURES_PER_IP: MAX_FAILURES_PER_IP,
    LOGIN_LOCKOUT_BASE_SECONDS: 1,
    LOGIN_LOCKOUT_MAX_SECONDS: 2,
    LOGIN_FAILURE_WINDOW_SECONDS: 60
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

const expectLocked = (r: RawReply, retryAfter?: number) => {
  expect(r.status, r.text).toBe(429)
  expect(r.json).toMatchObject({
    _tag: "TooManyAttempts",
    message: expect.any(String),
    retryAfterSeconds: expect.any(Number)
  })
  const seconds = (r.json as { retryAfterSeconds: number }).retryAfterSeconds
  expect(r.headers["retry-after"]).toBe(String(seconds))
  expect(seconds).toBeGreaterThanOrEqual(1)
  if (retryAfter !== undefined) expect(seconds).toBe(retryAfter)
  return seconds
}

/** Waits out a lock announced by Retry-After (plus a margin). */
const waitOut = (seconds: number) => Effect.sleep(`${seconds * 1000 + 150} millis`)

const fresh = clearThrottle(PREFIX)

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("login throttle", (it) => {
  it.scoped("N wrong passwords → 429 with Retry-After; the right password is refused during the lock and accepted after it", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      for (let i = 0; i < MAX_FAILURES; i++) {
        const r = yield* login(user.username, `wrong-${i}`)
        expect(r.status, `failure ${i + 1}`).toBe(401)
      }
      const locked = yield* login(user.username, "yet-another-guess")
      const seconds = expectLocked(locked, 1)
      // The right password does not get through either: a guess learns nothing while locked.
      expectLocked(yield* login(user.username, PASSWORD))
      yield* waitOut(seconds)
      const ok = yield* login(user.username, PASSWORD)
      expect(ok.status, ok.text).toBe(200)
      expect(ok.json).toMatchObject({ tokenType: "Bearer" })
    }))

  it.scoped("a successful login resets the username's counter", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < MAX_FAILURES - 1; i++) expect((yield* login(user.username, "typo")).status).toBe(401)
        expect((yield* login(user.username, PASSWORD)).status, `round ${round}`).toBe(200)
      }
    }))

  it.scoped("other usernames are unaffected; an unknown username is throttled exactly like a known one", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const victim = yield* fx.user("customer")
      const bystander = yield* fx.user("customer")
      const ghost = `ghost_${suffix()}`
      const known: Array<number> = []
      const unknown: Array<number> = []
      for (let i = 0; i <= MAX_FAILURES; i++) {
        known.push((yield* login(victim.username, "guess")).status)
        unknown.push((yield* login(ghost, "guess")).status)
      }
      // Same answers, same moment of lockout: the throttle does not reveal which usernames exist.
      expect(known).toEqual([...Array(MAX_FAILURES).fill(401), 429])
      expect(unknown).toEqual(known)
      expect((yield* login(bystander.username, PASSWORD)).status).toBe(200)
      expect((yield* login(`other_${suffix()}`, "guess")).status).toBe(401)
    }))

  it.scoped("each further failure doubles the lock, up to the cap, and every lock ends", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      for (let i = 0; i < MAX_FAILURES; i++) yield* login(user.username, "guess")
      const first = expectLocked(yield* login(user.username, "guess"), 1)
      yield* waitOut(first)
      // One more failure after the lock: twice as long (base 1 s → 2 s).
      expect((yield* login(user.username, "guess")).status).toBe(401)
      const second = expectLocked(yield* login(user.username, "guess"), 2)
      yield* waitOut(second)
      // And again: capped at LOGIN_LOCKOUT_MAX_SECONDS (2 s), not 4 s.
      expect((yield* login(user.username, "guess")).status).toBe(401)
      const third = expectLocked(yield* login(user.username, "guess"), 2)
      yield* waitOut(third)
      expect((yield* login(user.username, PASSWORD)).status).toBe(200)
    }), 30_000)

  it.scoped("a burst of concurrent guesses gets at most N answers on the password", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const replies = yield* Effect.all(
        Array.from({ length: 10 }, (_, i) => login(user.username, `parallel-${i}`)),
        { concurrency: "unbounded" }
      )
      const statuses = replies.map((r) => r.status).sort()
      expect(statuses).toEqual([...Array(MAX_FAILURES).fill(401), ...Array(10 - MAX_FAILURES).fill(429)])
    }))

  it.scoped(
    "one address spraying many usernames is locked; successful logins from it never count",
    () =>
      Effect.gen(function*() {
        yield* fresh
        const fx = yield* makeFixtures
        const user = yield* fx.user("admin")
        // The benchmark's pattern: many logins with the right password. None counts against the address.
        for (let i = 0; i < MAX_FAILURES_PER_IP + 3; i++) {
          expect((yield* login(user.username, PASSWORD)).status).toBe(200)
        }
        // A spray: one guess each at many usernames, none of which reaches its own threshold.
        for (let i = 0; i < MAX_FAILURES_PER_IP; i++) {
          expect((yield* login(`spray_${i}_${suffix()}`, "Summer2024!")).status).toBe(401)
        }
        const locked = yield* login(user.username, PASSWORD)
        const seconds = expectLocked(locked, 1)
        yield* waitOut(seconds)
        // The lock ended. This success set the next (longer) address lock on admission, and lifts it again.
        expect((yield* login(user.username, PASSWORD)).status).toBe(200)
        expect((yield* login(user.username, PASSWORD)).status).toBe(200)
      }),
    30_000
  )

  it.effect("the OpenAPI contract lists the 429 of the login endpoint", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const spec = yield* rawRequest(port, { method: "GET", path: "/openapi.json" })
      const responses = (spec.json as { paths: Record<string, { post: { responses: Record<string, unknown> } }> })
        .paths["/v1/auth/login"]!.post.responses
      expect(Object.keys(responses)).toEqual(expect.arrayContaining(["200", "400", "401", "429"]))
    }))
})
