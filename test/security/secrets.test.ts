/**
 * Passwords and their hashes never leave the server: not in any response
 * (successes, 400s, 401s, 409s), not in the logs (captured at every level
 * while users are created and log in), not in the audit log.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { makeFixtures, suffix } from "../api/support/Fixtures.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"
import { type RawReply, rawRequest, serverPort } from "../support/RawHttp.js"

/** Every log line the server writes while the file runs (logfmt, cause included). */
const lines: Array<string> = []
const CaptureLogs = Layer.merge(
  Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))),
  Logger.minimumLogLevel(LogLevel.All)
)

const TestLayer = apiWithOwnThrottle("secrets", NO_THROTTLE).pipe(Layer.provide(CaptureLogs))

const send = (method: string, path: string, body: unknown, token?: string) =>
  Effect.flatMap(serverPort, (port) =>
    rawRequest(port, {
      method,
      path,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body)
    }))

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("secrets", (it) => {
  it.scoped("no response, log line or audit row ever carries a password or its hash", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const admin = yield* fx.user("admin")
      const tag = suffix()
      const password = `Pw-${tag}-correct-horse`
      const wrong = `Pw-${tag}-wrong-guess`
      const tooShort = `s${tag.slice(0, 6)}`
      const tooLong = `L${tag}`.padEnd(201, "y")
      const username = `secret_${tag}`
      const replies: Array<[string, RawReply]> = []
      const record = (what: string) => (r: RawReply) => Effect.sync(() => replies.push([what, r]))
      const logsBefore = lines.length

      const created = yield* send("POST", "/v1/users", { username, password, role: "customer" }, admin.token).pipe(
        Effect.tap(record("create"))
      )
      expect(created.status).toBe(201)
      const userId = (created.json as { id: string }).id
      yield* fx.track(userId)
      const [{ passwordHash }] =
        (yield* sql<{ passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${userId}`) as [
          { passwordHash: string }
        ]
      const [, , , , salt, key] = passwordHash.split("$")

      const ok = yield* send("POST", "/v1/auth/login", { username, password }).pipe(Effect.tap(record("login")))
      expect(ok.status).toBe(200)
      const token = (ok.json as { accessToken: string }).accessToken
      yield* send("GET", "/v1/users/me", undefined, token).pipe(Effect.tap(record("me")))
      expect(
        (yield* send("POST", "/v1/auth/login", { username, password: wrong }).pipe(Effect.tap(record("wrong")))).status
      ).toBe(401)
      expect(
        (yield* send("POST", "/v1/auth/login", { username: `nobody_${tag}`, password }).pipe(
          Effect.tap(record("unknown"))
        )).status
      ).toBe(401)
      // Invalid passwords are refused without being quoted back.
      for (
        const [what, body] of [
          ["short", { username: `other_${tag}`, password: tooShort, role: "agent" }],
          ["long", { username: `other_${tag}`, password: tooLong, role: "agent" }],
          ["taken", { username, password: wrong, role: "agent" }]
        ] as const
      ) {
        const r = yield* send("POST", "/v1/users", body, admin.token).pipe(Effect.tap(record(what)))
        expect(r.status, what).toBe(what === "taken" ? 409 : 400)
      }
      const long = yield* send("POST", "/v1/auth/login", { username, password: tooLong }).pipe(
        Effect.tap(record("login-long"))
      )
      expect(long.status).toBe(400)
      expect(long.json).toMatchObject({
        issues: [{ path: ["password"], message: "password must be at most 200 characters long" }]
      })

      const secrets = { password, wrong, tooShort, tooLong, passwordHash, salt: salt!, key: key! }
      for (const [what, reply] of replies) {
        for (const [name, secret] of Object.entries(secrets)) {
          expect(reply.text, `${what} response carries the ${name}`).not.toContain(secret)
        }
        expect(reply.text, what).not.toMatch(/passwordHash|password_hash|scrypt\$/)
      }
      const logged = lines.slice(logsBefore).join("\n")
      for (const [name, secret] of Object.entries(secrets)) {
        expect(logged, `the logs carry the ${name}`).not.toContain(secret)
      }
      const audit = yield* sql<
        { changes: unknown }
      >`SELECT changes FROM audit_log WHERE entity_id = ${userId} OR actor_id = ${userId}`
      expect(audit).toHaveLength(1)
      for (const [name, secret] of Object.entries(secrets)) {
        expect(JSON.stringify(audit), `the audit log carries the ${name}`).not.toContain(secret)
      }
    }))

  it.effect("the log capture does see the server's logs (start-up, at debug level)", () =>
    Effect.sync(() => {
      expect(lines.some((l) => l.includes("Admin user 'admin' exists") || l.includes("Created admin user"))).toBe(true)
    }))
})
