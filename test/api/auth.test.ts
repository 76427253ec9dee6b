/**
 * Login and bearer authentication: credentials, the admin bootstrap, and
 * every way a token can be wrong (missing, malformed, tampered, alg none,
 * wrong key, wrong issuer, expired, unknown subject).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SignJWT, UnsecuredJWT } from "jose"
import { randomBytes, scryptSync } from "node:crypto"
import { LoginResponse } from "../../src/Auth/Api.js"
import { resolveSecret } from "../../src/Auth/Secret.js"
import { User } from "../../src/Users/Domain.js"
import { call, decode, get, post, problem } from "./support/Client.js"
import { cleanupUsers, makeFixtures, PASSWORD } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

const key = (secret: string) => new TextEncoder().encode(secret)

const sign = (claims: Record<string, unknown>, secret: string, options: { sub: string; exp?: number; iss?: string }) =>
  Effect.promise(() =>
    new SignJWT({ ver: 0, ...claims })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(options.sub)
      .setIssuer(options.iss ?? "opsdesk")
      .setIssuedAt()
      .setExpirationTime(options.exp ?? Math.floor(Date.now() / 1000) + 600)
      .sign(key(secret))
  )

const expectUnauthorized = (token: string | undefined, headers?: Record<string, string>) =>
  Effect.gen(function*() {
    const r = yield* call("GET", "/v1/users/me", { token, headers })
    expect(r.status, token).toBe(401)
    expect(r.body).toMatchObject({ _tag: "Unauthorized" })
    expect(typeof (r.body as { message: unknown }).message).toBe("string")
  })

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("authentication", (it) => {
  it.scoped("login returns a bearer token that authenticates the user", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const r = yield* post("/v1/auth/login", { username: user.username, password: PASSWORD })
      expect(r.status).toBe(200)
      const login = decode(LoginResponse, r)
      expect(login.tokenType).toBe("Bearer")
      expect(login.expiresIn).toBe(3600)
      const me = yield* get("/v1/users/me", login.accessToken)
      expect(me.status).toBe(200)
      expect(decode(User, me)).toMatchObject({ id: user.id, username: user.username, role: "agent" })
      expect(me.text).not.toContain("password")
    }))

  it.scoped("a password hash of an earlier version is upgraded to Argon2id at the next login, sessions kept", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      const salt = randomBytes(16)
      const key = scryptSync(PASSWORD, salt, 32, { N: 16384, r: 8, p: 1 })
      const legacy = `scrypt$16384$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`
      yield* sql`UPDATE users SET password_hash = ${legacy} WHERE id = ${user.id}`
      const storedHash = sql<{ passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${user.id}`.pipe(
        Effect.map((rows) => rows[0]!.passwordHash)
      )

      expect((yield* post("/v1/auth/login", { username: user.username, password: "wrong-password-1" })).status)
        .toBe(401)
      expect(yield* storedHash).toBe(legacy)

      expect((yield* post("/v1/auth/login", { username: user.username, password: PASSWORD })).status).toBe(200)
      const upgraded = yield* storedHash
      expect(upgraded).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
      expect((yield* get("/v1/users/me", user.token)).status).toBe(200)
      expect((yield* post("/v1/auth/login", { username: user.username, password: PASSWORD })).status).toBe(200)
      expect(yield* storedHash).toBe(upgraded)
    }))

  it.effect("the bootstrap admin admin/admin123 exists after start-up", () =>
    Effect.gen(function*() {
      const r = yield* post("/v1/auth/login", { username: "admin", password: "admin123" })
      expect(r.status).toBe(200)
      const me = yield* get("/v1/users/me", decode(LoginResponse, r).accessToken)
      expect(me.body).toMatchObject({ username: "admin", role: "admin" })
    }))

  it.scoped("a wrong password and an unknown user get the same 401", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const wrong = yield* post("/v1/auth/login", { username: user.username, password: "not-the-password" })
      const unknown = yield* post("/v1/auth/login", { username: `nobody_${user.username}`, password: PASSWORD })
      expect(wrong.status).toBe(401)
      expect(unknown.status).toBe(401)
      expect(wrong.text).toBe(unknown.text)
      expect(wrong.body).toEqual(problem(401, "Unauthorized", "Invalid username or password"))
    }))

  it.effect("a login without both fields is 400", () =>
    Effect.gen(function*() {
      for (const body of [{ username: "admin" }, { password: "admin123" }, {}, { username: "", password: "x" }]) {
        const r = yield* post("/v1/auth/login", body)
        expect(r.status, JSON.stringify(body)).toBe(400)
      }
    }))

  it.effect("no Authorization header, or not a Bearer one, is 401", () =>
    Effect.gen(function*() {
      yield* expectUnauthorized(undefined)
      yield* expectUnauthorized(undefined, { authorization: "Basic YWRtaW46YWRtaW4xMjM=" })
      yield* expectUnauthorized(undefined, { authorization: "Bearer" })
      yield* expectUnauthorized("not.a.jwt")
      yield* expectUnauthorized("garbage")
    }))

  it.scoped("a tampered, alg none, wrong-key, wrong-issuer, expired or malformed-claims token is 401", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      const secret = yield* resolveSecret
      // Sanity: a token signed like the API's works.
      const good = yield* sign({ username: user.username, role: "customer" }, secret, { sub: user.id })
      expect((yield* get("/v1/users/me", good)).status).toBe(200)

      // Tampered: promote the payload to admin, keep the signature.
      const [header, , signature] = user.token.split(".")
      const forged = Buffer.from(
        JSON.stringify({ sub: user.id, username: user.username, role: "admin", iss: "opsdesk", exp: 9999999999 })
      ).toString("base64url")
      yield* expectUnauthorized(`${header}.${forged}.${signature}`)
      // Tampered signature.
      yield* expectUnauthorized(user.token.slice(0, -2) + (user.token.endsWith("AA") ? "BB" : "AA"))
      // alg: none.
      yield* expectUnauthorized(
        new UnsecuredJWT({ username: user.username, role: "admin" }).setSubject(user.id).setIssuer("opsdesk")
          .setExpirationTime("1h").encode()
      )
      // Wrong key.
      yield* expectUnauthorized(
        yield* sign({ username: user.username, role: "customer" }, `${secret}-other`, { sub: user.id })
      )
      // Wrong issuer.
      yield* expectUnauthorized(
        yield* sign({ username: user.username, role: "customer" }, secret, { sub: user.id, iss: "someone-else" })
      )
      // Expired.
      yield* expectUnauthorized(
        yield* sign({ username: user.username, role: "customer" }, secret, {
          sub: user.id,
          exp: Math.floor(Date.now() / 1000) - 60
        })
      )
      // Signed, but the claims are not ours.
      yield* expectUnauthorized(
        yield* sign({ username: user.username, role: "customer" }, secret, { sub: "not-a-uuid" })
      )
      for (const ver of [undefined, -1, 1.5, "0", 1]) {
        yield* expectUnauthorized(
          yield* sign({ username: user.username, role: "customer", ver }, secret, { sub: user.id })
        )
      }
      // The role and username claims are informational: the database's are used.
      const claimsAdmin = yield* sign({ username: "someone-else", role: "admin" }, secret, { sub: user.id })
      expect((yield* get("/v1/users/me", claimsAdmin)).body).toMatchObject({
        username: user.username,
        role: "customer"
      })
      expect(
        (yield* post(
          "/v1/users",
          { username: `x_${user.id.slice(0, 8)}`, password: PASSWORD, role: "admin" },
          claimsAdmin
        )).status
      )
        .toBe(403)
    }))

  it.scoped("a valid token of a user deleted since is 401 on /me and on writes", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("customer")
      yield* cleanupUsers([user.id])
      yield* expectUnauthorized(user.token)
      const r = yield* post("/v1/tickets", { title: "orphan", description: "owner is gone" }, user.token)
      expect(r.status).toBe(401)
    }))

  it.scoped("a deleted agent's still-valid token cannot post messages (401, nothing written)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = yield* post("/v1/tickets", { title: "needs help", description: "d" }, owner.token)
      const ticketId = (ticket.body as { id: string }).id
      yield* cleanupUsers([agent.id])
      const r = yield* post("/v1/messages", { ticketId, content: "from beyond" }, agent.token)
      expect(r.status).toBe(401)
      expect(r.body).toMatchObject({ _tag: "Unauthorized" })
      const messages = yield* get(`/v1/tickets/${ticketId}/messages`, owner.token)
      expect((messages.body as { items: Array<unknown> }).items).toHaveLength(0)
    }))

  it.effect("the public User schema has no password field", () =>
    Effect.sync(() => {
      expect(Object.keys(User.fields)).toEqual(["id", "username", "role", "active", "email", "createdAt"])
      expect(
        Schema.is(User)({
          id: crypto.randomUUID(),
          username: "u",
          role: "admin",
          active: true,
          email: null,
          createdAt: "x",
          passwordHash: "h"
        })
      ).toBe(true)
      expect(
        Schema.encodeSync(User)(
          {
            id: crypto.randomUUID(),
            username: "u",
            role: "admin",
            active: true,
            email: null,
            createdAt: "x",
            passwordHash: "h"
          } as typeof User.Type
        )
      ).not.toHaveProperty("passwordHash")
    }))
})
