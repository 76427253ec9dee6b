/** Users: admin-only creation, validation, duplicates (409), and /me. */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { User } from "../../src/Users/Domain.js"
import { decode, get, post } from "./support/Client.js"
import { auditRows, makeFixtures, suffix } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("users", (it) => {
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
      expect(Object.keys(r.body as object).sort()).toEqual(["createdAt", "id", "role", "username"])
      expect(r.text).not.toContain("scrypt")

      const login = yield* post("/v1/auth/login", { username, password: "s3cret-password" })
      expect(login.status).toBe(200)

      const sql = yield* SqlClient.SqlClient
      const [stored] = yield* sql<{ passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${user.id}`
      expect(stored!.passwordHash).toMatch(/^scrypt\$16384\$8\$1\$[\w-]+\$[\w-]+$/)
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
        [{ username: `ok_${suffix()}`, password: "password123" }, "role"]
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
})
