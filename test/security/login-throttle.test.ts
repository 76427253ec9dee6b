/**
 * Failed-login throttling (src/Auth/LoginThrottle.ts) through the real server
 * and Redis, with short windows: 3 failures for one username from one address
 * (12 from one address for any usernames) lock that pair (or address) for
 * 1 s, doubling up to 2 s; a username is never locked, only slowed (4
 * failures from anywhere, then 20 ms doubling up to 80 ms). One password check
 * at a time, 15 waiting (4 per client).
 *
 * Requests from `rawRequest` come from 127.0.0.1; `loginFrom` picks another
 * address of 127.0.0.0/8, which is how an attacker's and a user's clients are
 * told apart here. IPv6 clients (a /64 each) are checked on the throttle
 * service itself: the loopback interface has one IPv6 address.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Either, Fiber, Layer } from "effect"
import { clientOf } from "../../src/Auth/Address.js"
import { make } from "../../src/Auth/LoginThrottle.js"
import { makeCheckGate } from "../../src/Auth/Password.js"
import type { LoginThrottleConfig } from "../../src/Config.js"
import { makeFixtures, PASSWORD, suffix } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { clearThrottle, loginFrom, ThrottleCleanup, throttlePrefix, withSettings } from "../support/LoginThrottle.js"
import { type RawReply, rawRequest, serverPort } from "../support/RawHttp.js"

const PREFIX = throttlePrefix("throttle")
const MAX_FAILURES = 3
const MAX_FAILURES_PER_IP = 12
const USER_DELAY_AFTER = 4
const USER_DELAY_MAX_MS = 80

const TestLayer = ThrottleCleanup(PREFIX).pipe(
  Layer.provideMerge(apiTestLayer()),
  Layer.provide(withSettings({
    LOGIN_THROTTLE_PREFIX: PREFIX,
    LOGIN_MAX_FAILURES: MAX_FAILURES,
    LOGIN_MAX_FAILURES_PER_IP: MAX_FAILURES_PER_IP,
    LOGIN_LOCKOUT_BASE_SECONDS: 1,
    LOGIN_LOCKOUT_MAX_SECONDS: 2,
    LOGIN_FAILURE_WINDOW_SECONDS: 60,
    LOGIN_USER_DELAY_AFTER: USER_DELAY_AFTER,
    LOGIN_USER_DELAY_BASE_MS: 20,
    LOGIN_USER_DELAY_MAX_MS: USER_DELAY_MAX_MS,
    PASSWORD_HASH_CONCURRENCY: 1,
    PASSWORD_HASH_QUEUE: 15
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

/** A loopback address of its own for each client a test plays (127.0.0.1 is `rawRequest`'s). */
let lastAddress = 0
const newAddress = () => {
  lastAddress++
  return `127.${Math.floor(lastAddress / 250) + 10}.${lastAddress % 250}.${1 + Math.floor(Math.random() * 250)}`
}

const loginAs = (from: string, username: string, password: string) =>
  Effect.flatMap(serverPort, (port) => loginFrom(port, from, username, password))

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

  it.scoped("an attacker failing again and again from one address cannot stop the user logging in from another", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const victim = yield* fx.user("admin")
      const attacker = newAddress()
      const answers: Array<number> = []
      for (let i = 0; i < 4 * MAX_FAILURES; i++) {
        answers.push((yield* loginAs(attacker, victim.username, `guess-${i}`)).status)
      }
      expect(answers).toEqual([...Array(MAX_FAILURES).fill(401), ...Array(3 * MAX_FAILURES).fill(429)])
      // The attacker's address is locked for that username, the right password included...
      expect((yield* loginAs(attacker, victim.username, PASSWORD)).status).toBe(429)
      // ...and the user, from anywhere else, gets in (with the old per-username lock: 429 for everyone).
      const user = yield* loginAs(newAddress(), victim.username, PASSWORD)
      expect(user.status, JSON.stringify(user.json)).toBe(200)
      expect((yield* login(victim.username, PASSWORD)).status).toBe(200)
    }))

  it.scoped("guesses at one username from many addresses slow it down but never lock it", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const victim = yield* fx.user("customer")
      // Each address stays under its own thresholds; together they are 20 failures for the username.
      for (let i = 0; i < 10; i++) {
        const from = newAddress()
        for (let j = 0; j < MAX_FAILURES - 1; j++) {
          expect((yield* loginAs(from, victim.username, `spread-${i}-${j}`)).status).toBe(401)
        }
      }
      const user = yield* loginAs(newAddress(), victim.username, PASSWORD)
      expect(user.status, JSON.stringify(user.json)).toBe(200)
    }))

  it.scoped("a login succeeds while a flood of concurrent wrong guesses is in flight", () =>
    Effect.gen(function*() {
      yield* fresh
      const fx = yield* makeFixtures
      const victim = yield* fx.user("admin")
      // Three attacking addresses, 25 guesses each at once: at the victim and at usernames sprayed around.
      const attackers = [newAddress(), newAddress(), newAddress()]
      const firstAnswer = yield* Deferred.make<void>()
      const flood = yield* Effect.all(
        attackers.flatMap((from) =>
          Array.from(
            { length: 25 },
            (_, i) =>
              loginAs(from, i % 2 === 0 ? victim.username : `spray_${i}_${suffix()}`, `flood-${i}`).pipe(
                Effect.tap(() => Deferred.succeed(firstAnswer, undefined))
              )
          )
        ),
        { concurrency: "unbounded" }
      ).pipe(Effect.fork)
      // The flood has reached the server; most of it is still waiting for its password check.
      yield* Deferred.await(firstAnswer)
      const user = yield* loginAs(newAddress(), victim.username, PASSWORD)
      const floodAnswers = yield* Fiber.join(flood)
      expect(user.status, JSON.stringify(user.json)).toBe(200)
      // Every guess got an answer: refused ones at once, with Retry-After.
      for (const answer of floodAnswers) {
        expect([401, 429, 503]).toContain(answer.status)
        if (answer.status !== 401) expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1)
      }
      expect(floodAnswers.filter((a) => a.status === 401).length).toBeGreaterThan(0)
    }), 60_000)

  it.scoped("a successful login resets the pair's counter", () =>
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

  const throttleWith = (settings: Partial<LoginThrottleConfig> = {}) =>
    make({
      maxFailures: MAX_FAILURES,
      maxFailuresPerIp: MAX_FAILURES_PER_IP,
      lockoutBaseSeconds: 30,
      lockoutMaxSeconds: 60,
      windowSeconds: 60,
      userDelayAfter: USER_DELAY_AFTER,
      userDelayBaseMs: 20,
      userDelayMaxMs: USER_DELAY_MAX_MS,
      keyPrefix: PREFIX,
      ...settings
    })

  it.effect("the username's delay grows with its failures from anywhere and stays within its cap", () =>
    Effect.gen(function*() {
      yield* fresh
      const throttle = yield* throttleWith()
      const username = `spread_${suffix()}`
      const delays: Array<number> = []
      for (let i = 0; i < 12; i++) {
        const admitted = yield* throttle.begin({ username, ip: `10.77.${i}.1` })
        delays.push(Duration.toMillis(admitted.delay))
      }
      expect(delays).toEqual([0, 0, 0, 0, 20, 40, 80, 80, 80, 80, 80, 80])
      // Never a lock: the next address is admitted too.
      expect(Either.isRight(yield* Effect.either(throttle.begin({ username, ip: "10.77.99.1" })))).toBe(true)
    }))

  it.effect("addresses inside one IPv6 /64 are one client; IPv4-mapped addresses are their IPv4 address", () =>
    Effect.gen(function*() {
      yield* fresh
      const throttle = yield* throttleWith()
      const username = `v6_${suffix()}`
      const attempt = (ip: string) => Effect.either(throttle.begin({ username, ip }))
      for (let i = 0; i < MAX_FAILURES; i++) {
        expect(Either.isRight(yield* attempt(`2001:db8:abcd:12:${i + 1}::1`))).toBe(true)
      }
      // Another address of the same /64: the same (locked) client.
      const rotated = yield* attempt("2001:DB8:ABCD:12:ffff:ffff:ffff:fffe")
      expect(Either.isLeft(rotated) && rotated.left._tag).toBe("TooManyAttempts")
      // The next /64 is another client.
      expect(Either.isRight(yield* attempt("2001:db8:abcd:13::1"))).toBe(true)

      const mapped = `mapped_${suffix()}`
      for (let i = 0; i < MAX_FAILURES; i++) yield* throttle.begin({ username: mapped, ip: "::ffff:10.9.8.7" })
      const plain = yield* Effect.either(throttle.begin({ username: mapped, ip: "10.9.8.7" }))
      expect(Either.isLeft(plain) && plain.left._tag).toBe("TooManyAttempts")
    }))

  it.effect("the OpenAPI contract lists the 429 of the login endpoint", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const spec = yield* rawRequest(port, { method: "GET", path: "/openapi.json" })
      const responses = (spec.json as { paths: Record<string, { post: { responses: Record<string, unknown> } }> })
        .paths["/v1/auth/login"]!.post.responses
      expect(Object.keys(responses)).toEqual(expect.arrayContaining(["200", "400", "401", "429", "503"]))
    }))
})

describe("clients and the password-check gate", () => {
  it("a client is an IPv4 address or an IPv6 /64", () => {
    expect(clientOf("203.0.113.9")).toBe("203.0.113.9")
    expect(clientOf("::ffff:203.0.113.9")).toBe("203.0.113.9")
    expect(clientOf("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64")
    expect(clientOf("2001:DB8:1:2::9")).toBe("2001:db8:1:2::/64")
    expect(clientOf("fe80::1%eth0")).toBe("fe80::/64")
    expect(clientOf(undefined)).toBe("unknown")
  })

  it.effect("at most concurrency + queue checks are held, one client a quarter; beyond, refused at once", () =>
    Effect.gen(function*() {
      // 1 running + 7 waiting = 8 places, 2 per client.
      const gate = yield* makeCheckGate({ concurrency: 1, queue: 7 })
      const release = yield* Deferred.make<void>()
      const held = (client: string) => Effect.fork(gate.run(client, Deferred.await(release)))
      const fibers = [yield* held("a"), yield* held("a")]
      yield* Effect.yieldNow()
      // The client holds its share: refused at once, 429-style.
      const third = yield* Effect.either(gate.run("a", Effect.void))
      expect(Either.isLeft(third) && third.left._tag).toBe("TooManyAttempts")
      for (const client of ["b", "b", "c", "c", "d", "d"]) fibers.push(yield* held(client))
      yield* Effect.yieldNow()
      expect(gate.held()).toBe(8)
      // Every place is taken: anyone else is refused at once, 503-style.
      const busy = yield* Effect.either(gate.run("e", Effect.void))
      expect(Either.isLeft(busy) && busy.left._tag).toBe("ServiceUnavailable")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.joinAll(fibers)
      expect(gate.held()).toBe(0)
      expect(yield* gate.run("e", Effect.succeed("checked"))).toBe("checked")
    }))
})
