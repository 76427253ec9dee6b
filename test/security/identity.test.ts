/**
 * Finding 1, "the token is the only truth": who the caller is comes from the
 * `users` table on every request, not from the token. Against the real API,
 * PostgreSQL and Redis (and RabbitMQ for the DLQ purge, on a vhost of its own):
 * - a deleted admin's token can no longer create users nor purge the DLQ;
 * - a demoted agent's SAME token no longer reads another customer's ticket;
 * - a deactivated user's token is refused and the user cannot log in, until
 *   reactivated (the old tokens stay dead);
 * - logout and a password change end every session of the user;
 * - a token signed with the right key but without `exp`, or living longer
 *   than the cap, is refused;
 * - the in-process user cache is stale for at most AUTH_USER_CACHE_MS.
 *
 * The HTTP tests run with the user cache off (AUTH_USER_CACHE_MS=0), since
 * they change users behind the API's back with SQL; the cache's bound has a
 * test of its own under the TestClock.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Either, Exit, Layer, TestClock, TestContext } from "effect"
import { SignJWT } from "jose"
import { randomBytes } from "node:crypto"
import { Identity } from "../../src/Auth/Identity.js"
import { JwtConfig } from "../../src/Config.js"
import { Ticket } from "../../src/Tickets/Domain.js"
import { call, decode, get, patch, post, problem } from "../api/support/Client.js"
import { auditRows, cleanupUsers, makeFixtures, PASSWORD, suffix, type TestUser } from "../api/support/Fixtures.js"
import { configFrom, withVhost } from "../support/Env.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"

/** Random per run: a secret written in the repository would be refused at start-up. */
const SECRET = randomBytes(32).toString("base64url")

const TestEnv = Layer.unwrapScoped(
  Effect.map(
    withVhost("identity"),
    ({ url }) =>
      apiWithOwnThrottle("identity", { ...NO_THROTTLE, JWT_SECRET: SECRET, AUTH_USER_CACHE_MS: 0, AMQP_URL: url })
  )
)

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** A token signed with the API's own key, with exactly the given time claims. */
const signed = (user: TestUser, claims: { readonly iat?: number; readonly exp?: number; readonly ver?: number }) =>
  Effect.promise(() => {
    let jwt = new SignJWT({ username: user.username, role: user.role, ver: claims.ver ?? 0 })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(user.id)
      .setIssuer("opsdesk")
    if (claims.iat !== undefined) jwt = jwt.setIssuedAt(claims.iat)
    if (claims.exp !== undefined) jwt = jwt.setExpirationTime(claims.exp)
    return jwt.sign(new TextEncoder().encode(SECRET))
  })

const login = (username: string, password: string = PASSWORD) => post("/v1/auth/login", { username, password })

const tokenOf = (username: string, password: string = PASSWORD) =>
  Effect.map(login(username, password), (r) => {
    expect(r.status, r.text).toBe(200)
    return (r.body as { accessToken: string }).accessToken
  })

const expectRefused = (token: string, what: string) =>
  Effect.gen(function*() {
    const r = yield* get("/v1/users/me", token)
    expect(r.status, `${what}: ${r.text}`).toBe(401)
    expect(r.body, what).toMatchObject({ _tag: "Unauthorized" })
  })

const WRONG_PASSWORD = problem(401, "Unauthorized", "Invalid username or password")

layer(TestEnv, { excludeTestServices: true, timeout: "60 seconds" })("identity from the database", (it) => {
  it.scoped("a deleted admin's token can no longer create users (401) nor purge the DLQ (401)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const before = yield* post(
        "/v1/users",
        { username: `made_${suffix()}`, password: PASSWORD, role: "customer" },
        admin.token
      )
      expect(before.status, before.text).toBe(201)
      yield* fx.track((before.body as { id: string }).id)

      yield* cleanupUsers([admin.id])
      const created = yield* post(
        "/v1/users",
        { username: `ghost_${suffix()}`, password: PASSWORD, role: "admin" },
        admin.token
      )
      // (Before the fix this made a real admin: clean it up either way.)
      if (created.status === 201) yield* fx.track((created.body as { id: string }).id)
      expect(created.status, created.text).toBe(401)
      expect(created.body).toMatchObject({ _tag: "Unauthorized" })

      const purge = yield* call("POST", "/ops/api/dlq/purge", { token: admin.token })
      expect(purge.status, purge.text).toBe(401)
      expect(purge.body).toMatchObject({ _tag: "Unauthorized" })
    }))

  it.scoped("a role changed in the database applies to the SAME token: a demoted agent no longer reads others' tickets", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = decode(Ticket, yield* post("/v1/tickets", { title: "mine", description: "d" }, owner.token))
      expect((yield* get(`/v1/tickets/${ticket.id}`, agent.token)).status).toBe(200)

      // Changed outside the API (an operator's SQL): no version bump, yet the role is the database's.
      yield* sql`UPDATE users SET role = 'customer' WHERE id = ${agent.id}`
      const r = yield* get(`/v1/tickets/${ticket.id}`, agent.token)
      expect(r.status, r.text).toBe(404)
      const listed = yield* get("/v1/tickets?limit=100", agent.token)
      expect(listed.status).toBe(200)
      expect((listed.body as { items: Array<{ id: string }> }).items.map((t) => t.id)).not.toContain(ticket.id)
      expect((yield* get("/v1/users/me", agent.token)).body).toMatchObject({ role: "customer" })
    }))

  it.scoped("demoted through the API, the agent's token is refused at once; a new login is a customer's", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = decode(Ticket, yield* post("/v1/tickets", { title: "mine", description: "d" }, owner.token))
      expect((yield* get(`/v1/tickets/${ticket.id}`, agent.token)).status).toBe(200)

      const changed = yield* patch(`/v1/users/${agent.id}`, { role: "customer" }, admin.token)
      expect(changed.status, changed.text).toBe(200)
      expect(changed.body).toMatchObject({ id: agent.id, role: "customer", active: true })
      const r = yield* get(`/v1/tickets/${ticket.id}`, agent.token)
      expect(r.status, r.text).toBe(401)

      const fresh = yield* tokenOf(agent.username)
      expect((yield* get(`/v1/tickets/${ticket.id}`, fresh)).status).toBe(404)
      const audit = yield* auditRows(agent.id)
      expect(audit.filter((a) => a.action === "user.role_change")).toEqual([{
        actorId: admin.id,
        action: "user.role_change",
        entity: "user",
        entityId: agent.id,
        changes: { role: { from: "agent", to: "customer" } }
      }])
    }))

  it.scoped("a deactivated user's token is refused and the user cannot log in (the same 401 as a wrong password)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const user = yield* fx.user("agent")
      const session = yield* tokenOf(user.username)

      const r = yield* post(`/v1/users/${user.id}/deactivate`, {}, admin.token)
      expect(r.status, r.text).toBe(200)
      expect(r.body).toMatchObject({ id: user.id, active: false })
      yield* expectRefused(user.token, "fixture token")
      yield* expectRefused(session, "login token")
      const denied = yield* login(user.username)
      expect(denied.status).toBe(401)
      expect(denied.body).toEqual(WRONG_PASSWORD)
      expect((yield* auditRows(user.id)).map((a) => a.action)).toContain("user.deactivate")
    }))

  it.scoped("a deactivated user (deactivated in the database) is refused on the next request", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const user = yield* fx.user("agent")
      expect((yield* get("/v1/users/me", user.token)).status).toBe(200)
      yield* sql`UPDATE users SET active = false WHERE id = ${user.id}`
      yield* expectRefused(user.token, "deactivated")
    }))

  it.scoped("reactivation lets the user log in again; the tokens from before stay dead", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const user = yield* fx.user("customer")
      const old = yield* tokenOf(user.username)
      expect((yield* post(`/v1/users/${user.id}/deactivate`, {}, admin.token)).status).toBe(200)
      const back = yield* post(`/v1/users/${user.id}/reactivate`, {}, admin.token)
      expect(back.status, back.text).toBe(200)
      expect(back.body).toMatchObject({ id: user.id, active: true })

      const fresh = yield* tokenOf(user.username)
      expect((yield* get("/v1/users/me", fresh)).status).toBe(200)
      yield* expectRefused(old, "token from before the deactivation")
      yield* expectRefused(user.token, "fixture token")
      expect((yield* auditRows(user.id)).map((a) => a.action)).toEqual(
        expect.arrayContaining(["user.deactivate", "user.reactivate"])
      )
    }))

  it.scoped("logout ends every session of the user (204), and the user can log in again", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const phone = yield* tokenOf(user.username)
      const laptop = yield* tokenOf(user.username)
      expect((yield* get("/v1/users/me", phone)).status).toBe(200)

      const out = yield* call("POST", "/v1/auth/logout", { token: phone })
      expect(out.status, out.text).toBe(204)
      yield* expectRefused(phone, "the token that logged out")
      yield* expectRefused(laptop, "another session")
      yield* expectRefused(user.token, "fixture token")
      expect((yield* call("POST", "/v1/auth/logout", { token: phone })).status).toBe(401)

      expect((yield* get("/v1/users/me", yield* tokenOf(user.username))).status).toBe(200)
      expect((yield* auditRows(user.id)).map((a) => a.action)).toContain("user.logout")
    }))

  it.scoped("a password change ends the other sessions; a wrong current password is 403 and changes nothing", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const other = yield* tokenOf(user.username)
      const newPassword = `new-${suffix()}-password`

      const wrong = yield* post(
        "/v1/users/me/password",
        { currentPassword: "not-my-password", newPassword },
        user.token
      )
      expect(wrong.status, wrong.text).toBe(403)
      expect(wrong.body).toMatchObject({ _tag: "Forbidden" })
      expect(wrong.text).not.toContain("not-my-password")
      expect((yield* get("/v1/users/me", other)).status).toBe(200)

      const changed = yield* post("/v1/users/me/password", { currentPassword: PASSWORD, newPassword }, user.token)
      expect(changed.status, changed.text).toBe(200)
      const fresh = (changed.body as { accessToken: string }).accessToken
      expect((yield* get("/v1/users/me", fresh)).status).toBe(200)
      yield* expectRefused(other, "another session")
      yield* expectRefused(user.token, "the session that changed it")
      expect((yield* login(user.username)).body).toEqual(WRONG_PASSWORD)
      expect((yield* login(user.username, newPassword)).status).toBe(200)

      const audit = (yield* auditRows(user.id)).filter((a) => a.action === "user.password_change")
      expect(audit).toHaveLength(1)
      expect(JSON.stringify(audit)).not.toContain(newPassword)
    }))

  it.scoped("a token signed with the right key but without exp is refused", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      // The same claims with an exp are accepted: only the missing exp is refused.
      expect((yield* get("/v1/users/me", yield* signed(admin, { iat: nowSeconds(), exp: nowSeconds() + 600 }))).status)
        .toBe(200)
      yield* expectRefused(yield* signed(admin, { iat: nowSeconds() }), "no exp")
      yield* expectRefused(yield* signed(admin, { exp: nowSeconds() + 600 }), "no iat")
    }))

  it.scoped("a token living longer than JWT_MAX_LIFETIME_SECONDS (default one day) is refused", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const now = nowSeconds()
      expect((yield* get("/v1/users/me", yield* signed(admin, { iat: now, exp: now + 86_400 }))).status).toBe(200)
      yield* expectRefused(yield* signed(admin, { iat: now, exp: now + 86_401 }), "a day and a second")
      yield* expectRefused(yield* signed(admin, { iat: now, exp: now + 10 * 365 * 86_400 }), "ten years")
      // Issued "in the future", to stretch the cap: refused too.
      yield* expectRefused(yield* signed(admin, { iat: now + 86_000, exp: now + 86_400 }), "iat in the future")
    }))

  it.effect("JWT_EXPIRES_IN_SECONDS longer than JWT_MAX_LIFETIME_SECONDS stops start-up", () =>
    Effect.gen(function*() {
      const read = (values: Record<string, string | number>) =>
        Effect.exit(Effect.withConfigProvider(JwtConfig, configFrom(values)))
      const refused = yield* read({ JWT_EXPIRES_IN_SECONDS: 7200, JWT_MAX_LIFETIME_SECONDS: 3600 })
      expect(Exit.isFailure(refused)).toBe(true)
      expect(String(refused)).toContain("JWT_EXPIRES_IN_SECONDS must be <= JWT_MAX_LIFETIME_SECONDS")
      expect(Exit.isSuccess(yield* read({ JWT_EXPIRES_IN_SECONDS: 3600, JWT_MAX_LIFETIME_SECONDS: 3600 }))).toBe(true)
    }))

  it.scoped("the user cache: a change made elsewhere is seen once AUTH_USER_CACHE_MS has passed, never later", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const user = yield* fx.user("agent")
      const claims = { userId: user.id, version: 0, exp: nowSeconds() + 600 }

      const check = Effect.gen(function*() {
        const identity = yield* Identity
        const resolve = Effect.map(Effect.either(identity.resolve(claims)), Either.isRight)
        expect(yield* resolve).toBe(true)
        // Another API instance deactivates the user: this one may answer from its cache...
        yield* sql`UPDATE users SET active = false WHERE id = ${user.id}`
        expect(yield* resolve).toBe(true)
        yield* TestClock.adjust("999 millis")
        expect(yield* resolve).toBe(true)
        // ...but not beyond the bound.
        yield* TestClock.adjust("2 millis")
        expect(yield* resolve).toBe(false)

        // Back, and then another instance bumps the version (a logout there): seen after the bound too.
        yield* sql`UPDATE users SET active = true WHERE id = ${user.id}`
        yield* TestClock.adjust("1001 millis")
        expect(yield* resolve).toBe(true)
        yield* sql`UPDATE users SET token_version = token_version + 1 WHERE id = ${user.id}`
        yield* TestClock.adjust("1001 millis")
        expect(yield* resolve).toBe(false)
        // A token newer than the cached row (a login elsewhere) is never refused because of the cache.
        expect(Either.isRight(yield* Effect.either(identity.resolve({ ...claims, version: 1 })))).toBe(true)
      })
      yield* check.pipe(
        Effect.provide(Identity.Default),
        Effect.withConfigProvider(configFrom({ AUTH_USER_CACHE_MS: 1000 })),
        Effect.provide(TestContext.TestContext)
      )

      // With AUTH_USER_CACHE_MS=0 there is no cache: the next lookup sees the change.
      yield* sql`UPDATE users SET active = true WHERE id = ${user.id}`
      const uncached = Effect.gen(function*() {
        const identity = yield* Identity
        const current = { ...claims, version: 1 }
        expect(Either.isRight(yield* Effect.either(identity.resolve(current)))).toBe(true)
        yield* sql`UPDATE users SET active = false WHERE id = ${user.id}`
        expect(Either.isLeft(yield* Effect.either(identity.resolve(current)))).toBe(true)
      })
      yield* uncached.pipe(
        Effect.provide(Identity.Default),
        Effect.withConfigProvider(configFrom({ AUTH_USER_CACHE_MS: 0 }))
      )
    }))
})
