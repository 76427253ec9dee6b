/**
 * Users: admin-only creation, validation, duplicates (409), /me; the admin's
 * listing and access changes (role, deactivation, password reset) with the
 * last-admin guard; a user's own password change. The API runs with the user
 * cache on (the default), so these also show that a change made through this
 * process is seen by the very next request.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { LoginResponse } from "../../src/Auth/Api.js"
import { User, UserPage } from "../../src/Users/Domain.js"
import { apiWithOwnThrottle } from "../support/LoginThrottle.js"
import { call, decode, get, patch, post, type Reply } from "./support/Client.js"
import { auditRows, makeFixtures, PASSWORD, suffix } from "./support/Fixtures.js"

const MAX_FAILURES = 3

const loginToken = (username: string, password: string = PASSWORD) =>
  Effect.map(post("/v1/auth/login", { username, password }), (r) => {
    expect(r.status, r.text).toBe(200)
    return decode(LoginResponse, r).accessToken
  })

const status = (token: string) => Effect.map(get("/v1/users/me", token), (r) => r.status)

layer(apiWithOwnThrottle("users", { LOGIN_MAX_FAILURES: MAX_FAILURES }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("users", (it) => {
  it.scoped("an admin creates a user: 201 without the hash; the user can log in; an audit row is written", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const username = `new.user-${suffix()}`
      const r = yield* post("/v1/users", { username, password: "s3cret-password", role: "agent" }, admin.token)
      expect(r.status).toBe(201)
      const user = decode(User, r)
      yield* fx.track(user.id)
      expect(user).toMatchObject({ username, role: "agent" })
      expect(Object.keys(r.body as object).sort()).toEqual(["active", "createdAt", "email", "id", "role", "username"])
      expect(user.email).toBeNull()
      expect(user.active).toBe(true)
      expect(r.text).not.toContain("argon2")

      const login = yield* post("/v1/auth/login", { username, password: "s3cret-password" })
      expect(login.status).toBe(200)

      const sql = yield* SqlClient.SqlClient
      const [stored] = yield* sql<{ passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${user.id}`
      expect(stored!.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
      expect(stored!.passwordHash).not.toContain("s3cret-password")

      const audit = yield* auditRows(user.id)
      expect(audit).toEqual([{
        actorId: admin.id,
        action: "user.create",
        entity: "user",
        entityId: user.id,
        changes: { username, role: "agent" }
      }])
    }))

  it.scoped("agents and customers may not create users (403)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      for (const role of ["agent", "customer"] as const) {
        const actor = yield* fx.user(role)
        const r = yield* post(
          "/v1/users",
          { username: `blocked_${suffix()}`, password: "password123", role: "admin" },
          actor.token
        )
        expect(r.status, role).toBe(403)
        expect(r.body).toMatchObject({ _tag: "Forbidden" })
      }
      const anonymous = yield* post("/v1/users", {
        username: `anon_${suffix()}`,
        password: "password123",
        role: "admin"
      })
      expect(anonymous.status).toBe(401)
    }))

  it.scoped("a taken username is 409 and changes nothing", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const existing = yield* fx.user("customer")
      const r = yield* post(
        "/v1/users",
        { username: existing.username, password: "password123", role: "agent" },
        admin.token
      )
      expect(r.status).toBe(409)
      expect(r.body).toMatchObject({ _tag: "Conflict" })
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ role: string }>`SELECT role FROM users WHERE username = ${existing.username}`
      expect(rows).toEqual([{ role: "customer" }])
      const audit =
        yield* sql`SELECT 1 FROM audit_log WHERE action = 'user.create' AND changes->>'username' = ${existing.username}`
      expect(audit).toHaveLength(0)
    }))

  it.scoped("usernames, passwords and roles are validated (400 naming the field)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ username: "ab", password: "password123", role: "agent" }, "username"],
        [{ username: "a".repeat(65), password: "password123", role: "agent" }, "username"],
        [{ username: "has space", password: "password123", role: "agent" }, "username"],
        [{ username: "émile", password: "password123", role: "agent" }, "username"],
        [{ username: `ok_${suffix()}`, password: "short", role: "agent" }, "password"],
        [{ username: `ok_${suffix()}`, password: "p".repeat(201), role: "agent" }, "password"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "root" }, "role"],
        [{ username: `ok_${suffix()}`, password: "password123" }, "role"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: "no-at-sign" }, "email"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: "a b@example.com" }, "email"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: "<a@example.com>" }, "email"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: "a@@example.com" }, "email"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: "a@-example.com" }, "email"],
        [{ username: `ok_${suffix()}`, password: "password123", role: "agent", email: 42 }, "email"],
        [{
          username: `ok_${suffix()}`,
          password: "password123",
          role: "agent",
          email: `${"a".repeat(64)}@${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.example`
        }, "email"]
      ]
      for (const [body, field] of cases) {
        const r = yield* post("/v1/users", body, admin.token)
        expect(r.status, JSON.stringify(body)).toBe(400)
        const issues = (r.body as { issues: Array<{ path: Array<string> }> }).issues
        expect(issues.map((i) => i.path[0])).toContain(field)
      }
    }))

  it.scoped("GET /v1/users/me returns the caller for every role", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      for (const role of ["admin", "agent", "customer"] as const) {
        const user = yield* fx.user(role)
        const r = yield* get("/v1/users/me", user.token)
        expect(r.status).toBe(200)
        expect(decode(User, r)).toMatchObject({ id: user.id, username: user.username, role })
      }
    }))

  it.scoped("the admin endpoints: 403 for agents and customers, 401 without a token; nothing changes", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const target = yield* fx.user("agent")
      const requests = [
        ["GET", "/v1/users", undefined],
        ["GET", `/v1/users/${target.id}`, undefined],
        ["PATCH", `/v1/users/${target.id}`, { role: "admin" }],
        ["POST", `/v1/users/${target.id}/deactivate`, undefined],
        ["POST", `/v1/users/${target.id}/reactivate`, undefined],
        ["POST", `/v1/users/${target.id}/password`, { password: "taken-over-password" }]
      ] as const
      for (const role of ["agent", "customer"] as const) {
        const caller = yield* fx.user(role)
        for (const [method, path, json] of requests) {
          const r = yield* call(method, path, { token: caller.token, json })
          expect(r.status, `${role} ${method} ${path}`).toBe(403)
          expect(r.body).toMatchObject({ _tag: "Forbidden" })
        }
      }
      for (const [method, path, json] of requests) {
        expect((yield* call(method, path, { json })).status, `${method} ${path}`).toBe(401)
      }
      expect(yield* status(target.token)).toBe(200)
      expect((yield* auditRows(target.id)).map((a) => a.action)).toEqual([])
    }))

  it.scoped("unknown users are 404, malformed ids and bodies 400 naming the field (passwords never echoed)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const target = yield* fx.user("customer")
      const unknown = crypto.randomUUID()
      for (
        const [method, path, json] of [
          ["GET", `/v1/users/${unknown}`, undefined],
          ["PATCH", `/v1/users/${unknown}`, { role: "agent" }],
          ["POST", `/v1/users/${unknown}/deactivate`, undefined],
          ["POST", `/v1/users/${unknown}/reactivate`, undefined],
          ["POST", `/v1/users/${unknown}/password`, { password: "a-new-password" }]
        ] as const
      ) {
        const r = yield* call(method, path, { token: admin.token, json })
        expect(r.status, `${method} ${path}`).toBe(404)
        expect(r.body).toMatchObject({ _tag: "NotFound", message: `user ${unknown} not found` })
      }
      expect((yield* get("/v1/users/not-a-uuid", admin.token)).status).toBe(400)
      expect((yield* post("/v1/users/not-a-uuid/deactivate", {}, admin.token)).status).toBe(400)
      const field = (r: { body: unknown }) => (r.body as { issues: Array<{ path: Array<string> }> }).issues[0]?.path[0]
      for (const body of [{}, { role: "root" }, { role: null }]) {
        const r = yield* patch(`/v1/users/${target.id}`, body, admin.token)
        expect(r.status, JSON.stringify(body)).toBe(400)
        expect(field(r)).toBe("role")
      }
      const short = yield* post(`/v1/users/${target.id}/password`, { password: "short-1" }, admin.token)
      expect(short.status).toBe(400)
      expect(field(short)).toBe("password")
      expect(short.text).not.toContain("short-1")
      for (
        const [body, name] of [
          [{ newPassword: "long-enough-password" }, "currentPassword"],
          [{ currentPassword: PASSWORD }, "newPassword"],
          [{ currentPassword: PASSWORD, newPassword: "tiny-pw" }, "newPassword"],
          [{ currentPassword: "", newPassword: "long-enough-password" }, "currentPassword"]
        ] as const
      ) {
        const r = yield* post("/v1/users/me/password", body, target.token)
        expect(r.status, JSON.stringify(body)).toBe(400)
        expect(field(r)).toBe(name)
        expect(r.text).not.toContain("tiny-pw")
      }
      for (const query of ["?limit=0", "?limit=101", "?cursor=abc", "?role=root", "?active=maybe"]) {
        expect((yield* get(`/v1/users${query}`, admin.token)).status, query).toBe(400)
      }
      expect((yield* auditRows(target.id)).map((a) => a.action)).toEqual([])
    }))

  it.scoped("a role change: 200 with the user, audited, their tokens refused; the same role changes nothing", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const user = yield* fx.user("customer")
      const same = yield* patch(`/v1/users/${user.id}`, { role: "customer" }, admin.token)
      expect(same.status).toBe(200)
      expect(decode(User, same)).toMatchObject({ id: user.id, role: "customer", active: true })
      expect(yield* status(user.token)).toBe(200)
      expect(yield* auditRows(user.id)).toEqual([])

      const promoted = yield* patch(`/v1/users/${user.id}`, { role: "agent", username: "ignored" }, admin.token)
      expect(promoted.status).toBe(200)
      expect(decode(User, promoted)).toMatchObject({ id: user.id, username: user.username, role: "agent" })
      expect(yield* status(user.token)).toBe(401)
      expect(decode(User, yield* get(`/v1/users/${user.id}`, admin.token))).toMatchObject({ role: "agent" })
      expect((yield* get("/v1/users/me", yield* loginToken(user.username))).body).toMatchObject({ role: "agent" })
      expect(yield* auditRows(user.id)).toEqual([{
        actorId: admin.id,
        action: "user.role_change",
        entity: "user",
        entityId: user.id,
        changes: { role: { from: "customer", to: "agent" } }
      }])
    }))

  it.scoped("with the user cache on, a change made through this API is seen by the very next request", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const user = yield* fx.user("agent")
      // Each token is used first, so the user's row is in the cache when the change comes.
      expect(yield* status(user.token)).toBe(200)
      expect((yield* post(`/v1/users/${user.id}/deactivate`, {}, admin.token)).status).toBe(200)
      expect(yield* status(user.token)).toBe(401)
      const again = yield* post(`/v1/users/${user.id}/deactivate`, {}, admin.token)
      expect(decode(User, again).active).toBe(false)
      expect((yield* post(`/v1/users/${user.id}/reactivate`, {}, admin.token)).status).toBe(200)

      const session = yield* loginToken(user.username)
      expect(yield* status(session)).toBe(200)
      expect((yield* call("POST", "/v1/auth/logout", { token: session })).status).toBe(204)
      expect(yield* status(session)).toBe(401)

      const next = yield* loginToken(user.username)
      expect(yield* status(next)).toBe(200)
      const reset = yield* post(`/v1/users/${user.id}/password`, { password: "reset-by-the-admin" }, admin.token)
      expect(reset.status, reset.text).toBe(204)
      expect(reset.text).toBe("")
      expect(yield* status(next)).toBe(401)
      expect((yield* post("/v1/auth/login", { username: user.username, password: PASSWORD })).status).toBe(401)
      expect(yield* status(yield* loginToken(user.username, "reset-by-the-admin"))).toBe(200)

      const audit = yield* auditRows(user.id)
      expect(audit.map((a) => a.action)).toEqual([
        "user.deactivate",
        "user.reactivate",
        "user.logout",
        "user.password_reset"
      ])
      expect(audit.find((a) => a.action === "user.password_reset")).toMatchObject({ actorId: admin.id, changes: {} })
      expect(audit[0]).toMatchObject({ actorId: admin.id, changes: { active: { from: true, to: false } } })
    }))

  it.scoped("the last active admin can be neither demoted nor deactivated (409); two admins demoting each other leave one", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const a = yield* fx.user("admin")
      // Only `a` stays an active admin during this test: the others are set aside, and put back whatever happens.
      const others = (yield* sql<{ id: string }>`UPDATE users SET active = false
        WHERE role = 'admin' AND active AND id <> ${a.id} RETURNING id`).map((r) => r.id)
      yield* Effect.addFinalizer(() =>
        others.length === 0 ? Effect.void : sql`UPDATE users SET active = true WHERE id IN ${sql.in(others)}`.pipe(
          Effect.orDie
        )
      )
      for (
        const r of [
          yield* patch(`/v1/users/${a.id}`, { role: "agent" }, a.token),
          yield* post(`/v1/users/${a.id}/deactivate`, {}, a.token)
        ]
      ) {
        expect(r.status, r.text).toBe(409)
        expect(r.body).toMatchObject({ _tag: "Conflict" })
      }
      expect(yield* status(a.token)).toBe(200)
      expect(yield* auditRows(a.id)).toEqual([])

      const b = yield* fx.user("admin")
      const replies = yield* Effect.all([
        patch(`/v1/users/${b.id}`, { role: "customer" }, a.token),
        patch(`/v1/users/${a.id}`, { role: "customer" }, b.token)
      ], { concurrency: 2 })
      expect(replies.filter((r) => r.status === 200), replies.map((r) => r.text).join()).toHaveLength(1)
      const admins = yield* sql<{ id: string }>`SELECT id FROM users
        WHERE role = 'admin' AND active AND id IN ${sql.in([a.id, b.id])}`
      expect(admins).toHaveLength(1)
    }))

  it.scoped("GET /v1/users: newest first, keyset-paginated, filtered by role and active", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const made = [yield* fx.user("agent"), yield* fx.user("agent"), yield* fx.user("agent")]
      expect((yield* post(`/v1/users/${made[1]!.id}/deactivate`, {}, admin.token)).status).toBe(200)

      const walk = (query: string) =>
        Effect.gen(function*() {
          const seen: Array<User> = []
          let cursor: string | null = null
          do {
            const after: string = cursor === null ? "" : `&cursor=${cursor}`
            const r: Reply = yield* get(`/v1/users?limit=2${query}${after}`, admin.token)
            expect(r.status, r.text).toBe(200)
            const page: UserPage = decode(UserPage, r)
            expect(page.items.length).toBeLessThanOrEqual(2)
            for (const user of page.items) seen.push(user)
            cursor = page.nextCursor
          } while (cursor !== null && !made.every((m) => seen.some((u) => u.id === m.id)))
          return seen
        })
      const ids = (users: ReadonlyArray<User>) => users.map((u) => u.id)
      const all = yield* walk("&role=agent")
      expect(new Set(ids(all)).size).toBe(all.length)
      expect(all.every((u) => u.role === "agent")).toBe(true)
      const order = ids(all).filter((id) => made.some((m) => m.id === id))
      expect(order).toEqual(made.map((m) => m.id).reverse())
      expect(JSON.stringify(all)).not.toContain("argon2")

      const inactive = yield* walk("&role=agent&active=false")
      expect(inactive.every((u) => !u.active)).toBe(true)
      expect(ids(inactive)).toContain(made[1]!.id)
      const active = ids(yield* walk("&active=true"))
      expect(active).not.toContain(made[1]!.id)
    }))

  it.scoped("a user's own password change: wrong current passwords count as failed logins (429 with Retry-After)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const body = { currentPassword: "a-guess-at-it", newPassword: "never-applied-password" }
      const statuses: Array<number> = []
      for (let i = 0; i < MAX_FAILURES + 1; i++) {
        const r = yield* post("/v1/users/me/password", body, user.token)
        statuses.push(r.status)
        if (r.status === 429) {
          expect(Number(r.headers["retry-after"])).toBeGreaterThan(0)
          expect(r.body).toMatchObject({ _tag: "TooManyAttempts" })
        }
      }
      expect(statuses.slice(0, MAX_FAILURES).every((s) => s === 403), statuses.join()).toBe(true)
      expect(statuses[MAX_FAILURES]).toBe(429)
      // Locked: even the right current password is not checked.
      const right = yield* post("/v1/users/me/password", { ...body, currentPassword: PASSWORD }, user.token)
      expect(right.status).toBe(429)
      expect(yield* status(user.token)).toBe(200)
      expect(yield* auditRows(user.id)).toEqual([])
    }))

  it.scoped("email: an admin sets it at creation; the user changes or removes their own; audited without the address", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const sql = yield* SqlClient.SqlClient
      const username = `mail.user-${suffix()}`
      const address = `${username}@example.test`
      const made = yield* post(
        "/v1/users",
        { username, password: "s3cret-password", role: "customer", email: address },
        admin.token
      )
      expect(made.status, made.text).toBe(201)
      const user = decode(User, made)
      yield* fx.track(user.id)
      expect(user.email).toBe(address)
      const [stored] = yield* sql<{ email: string | null }>`SELECT email FROM users WHERE id = ${user.id}`
      expect(stored!.email).toBe(address)
      expect(decode(User, yield* get(`/v1/users/${user.id}`, admin.token)).email).toBe(address)

      const token = yield* loginToken(username, "s3cret-password")
      expect(decode(User, yield* get("/v1/users/me", token)).email).toBe(address)
      // The longest address that fits (254), a host without a dot (a local mail catcher) and + tags are fine.
      const longest = `${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`
      expect(longest).toHaveLength(254)
      for (const next of ["ops+tickets@localhost", longest]) {
        const r = yield* patch("/v1/users/me", { email: next }, token)
        expect(r.status, r.text).toBe(200)
        expect(decode(User, r)).toMatchObject({ id: user.id, email: next })
        expect(decode(User, yield* get("/v1/users/me", token)).email).toBe(next)
      }
      // The same address again changes nothing (no audit row); null removes it.
      expect((yield* patch("/v1/users/me", { email: longest }, token)).status).toBe(200)
      const removed = yield* patch("/v1/users/me", { email: null }, token)
      expect(removed.status, removed.text).toBe(200)
      expect(decode(User, removed).email).toBeNull()
      const [after] = yield* sql<{ email: string | null }>`SELECT email FROM users WHERE id = ${user.id}`
      expect(after!.email).toBeNull()
      // Not an access change: the token still works.
      expect(yield* status(token)).toBe(200)

      const audit = yield* auditRows(user.id)
      expect(audit.map((a) => [a.action, a.actorId, a.changes])).toEqual([
        ["user.create", admin.id, { username, role: "customer", email: "set" }],
        ["user.email_change", user.id, { email: "set" }],
        ["user.email_change", user.id, { email: "set" }],
        ["user.email_change", user.id, { email: "removed" }]
      ])
      expect(JSON.stringify(audit)).not.toContain("@")
    }))

  it.scoped("email: a bad address is a 400 problem naming the field, and nothing changes", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const address = `${user.username}@example.test`
      expect((yield* patch("/v1/users/me", { email: address }, user.token)).status).toBe(200)
      const bad: Array<unknown> = [
        {},
        { email: "" },
        { email: "no-at-sign" },
        { email: "two@@example.com" },
        { email: "a b@example.com" },
        { email: "Alice <alice@example.com>" },
        { email: "alice@example.com\r\nBcc: x@example.com" },
        { email: `${"a".repeat(251)}@b.c` },
        { email: 7 }
      ]
      for (const body of bad) {
        const r = yield* patch("/v1/users/me", body, user.token)
        expect(r.status, JSON.stringify(body).slice(0, 60)).toBe(400)
        expect(r.headers["content-type"]).toContain("application/problem+json")
        const issues = (r.body as { issues: Array<{ path: Array<string> }> }).issues
        expect(issues.map((i) => i.path[0])).toContain("email")
      }
      expect(decode(User, yield* get("/v1/users/me", user.token)).email).toBe(address)
      expect((yield* call("PATCH", "/v1/users/me", { json: { email: address } })).status).toBe(401)
    }))

  it.scoped("email: shown to the user and to admins only, never to other users", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const owner = yield* fx.user("customer")
      const address = `${owner.username}@example.test`
      expect((yield* patch("/v1/users/me", { email: address }, owner.token)).status).toBe(200)
      for (const role of ["agent", "customer"] as const) {
        const other = yield* fx.user(role)
        for (
          const r of [
            yield* get(`/v1/users/${owner.id}`, other.token),
            yield* get(`/v1/users?limit=100`, other.token)
          ]
        ) {
          expect(r.status, role).toBe(403)
          expect(r.text).not.toContain(address)
        }
        // Their own account shows their own address (none), not anyone else's.
        const me = yield* get("/v1/users/me", other.token)
        expect(decode(User, me).email).toBeNull()
        expect(me.text).not.toContain(address)
      }
      expect(decode(User, yield* get(`/v1/users/${owner.id}`, admin.token)).email).toBe(address)
    }))
})
