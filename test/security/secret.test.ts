/**
 * No usable default secret (src/Config.ts, src/Auth/Secret.ts), against the
 * real PostgreSQL:
 * - an API started without JWT_SECRET generates a secret of its own and
 *   keeps it in the database: a token forged with a secret published with
 *   OpsDesk is refused (it used to create an admin), and two APIs on one
 *   database agree on the generated key;
 * - a short or published JWT_SECRET stops start-up in every environment, with
 *   one line that names the variable and the fix;
 * - JWT_SECRET_PREVIOUS verifies tokens signed before a rotation, never signs;
 * - no JWT_SECRET written anywhere in the repository can be used.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { decodeJwt, jwtVerify, SignJWT } from "jose"
import { execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync, statSync } from "node:fs"
import { extname } from "node:path"
import { jwtSecretProblem, PUBLIC_JWT_SECRETS } from "../../src/Config.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive, runMigrations } from "../../src/Store/Sql.js"
import { makeFixtures, PASSWORD } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { freePort } from "../support/ApiProcess.js"
import { clearThrottle, throttlePrefix } from "../support/LoginThrottle.js"
import { rawRequest } from "../support/RawHttp.js"

const random = () => randomBytes(32).toString("hex")
const PREFIX = throttlePrefix("secret")

/** The environment, with these settings and without any JWT_SECRET / JWT_SECRET_PREVIOUS it had. */
const settings = (values: Record<string, string>) => {
  const env = Object.entries(process.env).filter(([k, v]) => v !== undefined && !k.startsWith("JWT_SECRET"))
  return ConfigProvider.fromMap(
    new Map([
      ...env as Array<[string, string]>,
      ["LOGIN_THROTTLE_PREFIX", PREFIX],
      ...Object.entries(values)
    ])
  )
}

/** The API under test, its configuration exactly `settings(values)`. */
const api = (values: Record<string, string> = {}) =>
  apiTestLayer().pipe(Layer.provide(Layer.setConfigProvider(settings(values))))

/** The database (migrated), and this file's login counters removed afterwards. */
const Db = Layer.merge(
  Layer.effectDiscard(runMigrations).pipe(Layer.provideMerge(PgLive)),
  // The prefix is new each run: only what this file leaves behind needs removing.
  Layer.scopedDiscard(Effect.addFinalizer(() => clearThrottle(PREFIX))).pipe(Layer.provide(RedisLive))
)

/** A new installation: no generated secret in the database. */
const forgetGeneratedSecret = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DELETE FROM jwt_secret`).pipe(
  Effect.orDie,
  Effect.asVoid
)

const storedSecret = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ secret: string }>`SELECT secret FROM jwt_secret`
).pipe(Effect.orDie, Effect.map((rows) => rows.map((r) => r.secret)))

const portOf = (ctx: Context.Context<HttpServer.HttpServer>) => {
  const address = Context.get(ctx, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? address.port : 0
}

const send = (port: number, method: string, path: string, body?: unknown, token?: string) =>
  rawRequest(port, {
    method,
    path,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

const login = (port: number, username: string) =>
  Effect.map(send(port, "POST", "/v1/auth/login", { username, password: PASSWORD }), (r) => {
    expect(r.status, r.text).toBe(200)
    return (r.json as { accessToken: string }).accessToken
  })

/** The token's own header and claims, signed again with `secret`. */
const resign = (token: string, secret: string) =>
  Effect.promise(() =>
    new SignJWT(decodeJwt(token)).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(
      new TextEncoder().encode(secret)
    )
  )

describe("JWT secret", () => {
  it.live("an API started without JWT_SECRET refuses tokens forged with a published secret", () =>
    Effect.gen(function*() {
      yield* forgetGeneratedSecret
      yield* Effect.addFinalizer(() => forgetGeneratedSecret)
      const lines: Array<string> = []
      const capture = Layer.merge(
        Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (line) => void lines.push(line))),
        Logger.minimumLogLevel(LogLevel.All)
      )
      const ctx = yield* Layer.build(api().pipe(Layer.provide(capture)))
      const port = portOf(ctx)
      const [generated] = yield* storedSecret
      expect(Buffer.byteLength(generated!, "utf8")).toBeGreaterThanOrEqual(32)
      expect(lines.some((l) => l.includes("generated a random signing secret"))).toBe(true)
      expect(lines.join("\n")).not.toContain(generated)

      const fx = yield* Effect.provide(makeFixtures, ctx)
      const admin = yield* Effect.provide(fx.user("admin"), ctx)
      const newUser = (token: string) =>
        send(port, "POST", "/v1/users", {
          username: `forged_${randomBytes(4).toString("hex")}`,
          password: PASSWORD,
          role: "admin"
        }, token)
      for (const published of PUBLIC_JWT_SECRETS) {
        // The admin's own claims, signed with a published secret: what anyone could mint.
        const forged = yield* resign(admin.token, published)
        const r = yield* newUser(forged)
        expect(r.status, `${published}: ${r.text}`).toBe(401)
      }
      // The same claims signed with this installation's secret are the admin's: only the key was wrong above.
      const genuine = yield* newUser(yield* resign(admin.token, generated!))
      expect(genuine.status, genuine.text).toBe(201)
      yield* Effect.provide(fx.track((genuine.json as { id: string }).id), ctx)
    }).pipe(Effect.scoped, Effect.provide(Db)))

  it.live("two APIs started together on one database without JWT_SECRET share the key; another installation has its own", () =>
    Effect.gen(function*() {
      yield* forgetGeneratedSecret
      yield* Effect.addFinalizer(() => forgetGeneratedSecret)
      // Started at the same moment: both try to store a secret of their own.
      const [a, b] = yield* Effect.all([Layer.build(api()), Layer.build(api())], { concurrency: 2 })
      expect(yield* storedSecret).toHaveLength(1)
      const fx = yield* Effect.provide(makeFixtures, a)
      const user = yield* Effect.provide(fx.user("customer"), a)
      const fromA = yield* login(portOf(a), user.username)
      const fromB = yield* login(portOf(b), user.username)
      expect((yield* send(portOf(b), "GET", "/v1/users/me", undefined, fromA)).status).toBe(200)
      expect((yield* send(portOf(a), "GET", "/v1/users/me", undefined, fromB)).status).toBe(200)

      // A new installation (no stored secret): a key of its own, so the others' tokens mean nothing to it.
      yield* forgetGeneratedSecret
      const c = yield* Layer.build(api())
      expect((yield* send(portOf(c), "GET", "/v1/users/me", undefined, fromA)).status).toBe(401)
      expect((yield* send(portOf(c), "GET", "/v1/users/me", undefined, yield* login(portOf(c), user.username))).status)
        .toBe(200)
    }).pipe(Effect.scoped, Effect.provide(Db)))

  it.live("a short or published JWT_SECRET stops the API from starting, in development and in production", () =>
    Effect.gen(function*() {
      for (const nodeEnv of ["development", "production"]) {
        for (const value of ["too-short-for-hs256", ...PUBLIC_JWT_SECRETS]) {
          for (const name of ["JWT_SECRET", "JWT_SECRET_PREVIOUS"]) {
            const exit = yield* Effect.exit(Layer.build(api({ NODE_ENV: nodeEnv, [name]: value })))
            expect(Exit.isFailure(exit), `${nodeEnv} ${name}=${value}`).toBe(true)
            const cause = Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
            expect(cause).toContain(name)
            expect(cause).not.toContain(value)
          }
        }
      }
    }).pipe(Effect.scoped, Effect.provide(Db)))

  it.live(
    "the production bundle exits at start-up with one line naming JWT_SECRET and the fix",
    () =>
      Effect.promise(async () => {
        const cases = [["development", "tiny-secret-value"], ["production", PUBLIC_JWT_SECRETS[0]!]] as const
        for (const [nodeEnv, value] of cases) {
          const { code, output } = await runApi({
            NODE_ENV: nodeEnv,
            JWT_SECRET: value,
            PORT: String(await freePort())
          })
          expect(code, output).not.toBe(0)
          const lines = output.split("\n").filter((l) => l.includes("JWT_SECRET"))
          expect(lines.length, output).toBeGreaterThanOrEqual(1)
          expect(lines[0]).toContain("openssl rand -hex 32")
          expect(output).not.toContain(value)
          expect(output).not.toMatch(/^\s+at /m)
        }
      }),
    60_000
  )

  it.live("JWT_SECRET_PREVIOUS verifies tokens signed before a rotation; new tokens use JWT_SECRET", () =>
    Effect.gen(function*() {
      const [before, after, unrelated] = [random(), random(), random()]
      const old = yield* Layer.build(api({ JWT_SECRET: before }))
      const fx = yield* Effect.provide(makeFixtures, old)
      const user = yield* Effect.provide(fx.user("agent"), old)
      const issuedBefore = yield* login(portOf(old), user.username)
      const foreign = yield* login(portOf(yield* Layer.build(api({ JWT_SECRET: unrelated }))), user.username)

      const rotated = yield* Layer.build(api({ JWT_SECRET: after, JWT_SECRET_PREVIOUS: before }))
      const me = (ctx: Context.Context<HttpServer.HttpServer>, token: string) =>
        Effect.map(send(portOf(ctx), "GET", "/v1/users/me", undefined, token), (r) => r.status)
      expect(yield* me(rotated, issuedBefore)).toBe(200)
      expect(yield* me(rotated, foreign)).toBe(401)
      const issuedAfter = yield* login(portOf(rotated), user.username)
      const key = (secret: string) => new TextEncoder().encode(secret)
      expect(yield* Effect.promise(() => jwtVerify(issuedAfter, key(after)).then(() => true, () => false))).toBe(true)
      expect(yield* Effect.promise(() => jwtVerify(issuedAfter, key(before)).then(() => true, () => false))).toBe(
        false
      )

      // The overlap ends when JWT_SECRET_PREVIOUS is unset.
      const done = yield* Layer.build(api({ JWT_SECRET: after }))
      expect(yield* me(done, issuedBefore)).toBe(401)
      expect(yield* me(done, issuedAfter)).toBe(200)
    }).pipe(Effect.scoped, Effect.provide(Db)))
})

/** `node dist/api.mjs` with `env`, until it exits (it must, at start-up). */
const runApi = (env: Record<string, string>) =>
  new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    if (!existsSync("dist/api.mjs")) execFileSync(process.execPath, ["scripts/build.mjs"], { stdio: "ignore" })
    const child = spawn(process.execPath, ["dist/api.mjs"], {
      env: {
        PATH: process.env.PATH ?? "",
        DATABASE_URL: process.env.DATABASE_URL ?? "",
        REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
        // Nothing listens there: the process must stop on its configuration, not on the broker.
        AMQP_URL: "amqp://guest:guest@127.0.0.1:1",
        OUTBOX_RELAY: "off",
        LOG_LEVEL: "warn",
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (d) => (output += d))
    child.stderr.on("data", (d) => (output += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`dist/api.mjs did not stop at start-up:\n${output}`))
    }, 45_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })

// ---------------------------------------------------------------------------
// The repository: every value it assigns to JWT_SECRET must be refused.

/** Files whose unquoted `JWT_SECRET=value` / `JWT_SECRET: value` is configuration, not code. */
const CONFIG_LIKE = new Set([".yml", ".yaml", ".env", ".md", ".sh", ".txt", ".example", ""])

/** Literal values assigned to JWT_SECRET or JWT_SECRET_PREVIOUS in one file's text. */
const assignedSecrets = (path: string, text: string): Array<{ readonly line: number; readonly value: string }> => {
  const found: Array<{ line: number; value: string }> = []
  const configLike = CONFIG_LIKE.has(extname(path)) || /(^|\/)(Dockerfile|\.env[^/]*|run)$/.test(path)
  text.split("\n").forEach((line, i) => {
    if (!line.includes("JWT_SECRET")) return
    const values: Array<string> = []
    // `${JWT_SECRET:-fallback}` (compose, shell).
    for (const m of line.matchAll(/\$\{JWT_SECRET(?:_PREVIOUS)?:?-([^}]*)\}/g)) values.push(m[1]!)
    // JWT_SECRET: "x", JWT_SECRET="x", ["JWT_SECRET", "x"], JWT_SECRET || 'x', JWT_SECRET ?? `x`.
    for (
      const m of line.matchAll(/JWT_SECRET(?:_PREVIOUS)?["'`]?\s*(?:[:=,]|\|\||\?\?)\s*["'`]([^"'`]*)["'`]/g)
    ) values.push(m[1]!)
    // JWT_SECRET=x or JWT_SECRET: x, unquoted, in configuration files and documentation.
    if (configLike) {
      for (const m of line.matchAll(/JWT_SECRET(?:_PREVIOUS)?\s*[=:]\s*([^\s"'`|]+)/g)) values.push(m[1]!)
    }
    for (const value of values) {
      // Empty (unset), or computed at run time: not a value anyone can copy.
      if (value.trim() === "" || value.includes("$") || value.includes("process.env")) continue
      found.push({ line: i + 1, value })
    }
  })
  return found
}

describe("secrets written in the repository", () => {
  it("the scanner finds the assignments it is meant to find", () => {
    const sample = [
      "    JWT_SECRET: ${JWT_SECRET:-change-me-in-production-please-32chars}",
      "JWT_SECRET=opsdesk-development-secret-do-not-use-in-production",
      `new Map([["JWT_SECRET", "verified-tokens-test-secret"]])`,
      "const s = process.env.JWT_SECRET || 'bench-secret'",
      `withEnv({ NODE_ENV: "production", JWT_SECRET_PREVIOUS: "a-real-secret-from-the-vault" })`,
      "JWT_SECRET: ${JWT_SECRET:-}",
      "JWT_SECRET: random()",
      "export JWT_SECRET=$(openssl rand -hex 32)"
    ].join("\n")
    expect(assignedSecrets("docker-compose.yml", sample).map((f) => f.value)).toEqual([
      "change-me-in-production-please-32chars",
      "opsdesk-development-secret-do-not-use-in-production",
      "verified-tokens-test-secret",
      "bench-secret",
      "a-real-secret-from-the-vault",
      "random()"
    ])
    expect(assignedSecrets("x.ts", sample).map((f) => f.value)).not.toContain("random()")
  })

  it("no value the repository assigns to JWT_SECRET is accepted as a secret", () => {
    const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], {
      encoding: "utf8"
    }).split("\0").filter((f) => f !== "" && existsSync(f) && statSync(f).isFile() && statSync(f).size < 2_000_000)
    const usable: Array<string> = []
    let scanned = 0
    for (const file of files) {
      const text = readFileSync(file, "utf8")
      if (text.includes("\0")) continue
      scanned++
      for (const { line, value } of assignedSecrets(file, text)) {
        if (jwtSecretProblem("JWT_SECRET", value) === undefined) usable.push(`${file}:${line}: ${value}`)
      }
    }
    expect(scanned).toBeGreaterThan(100)
    // Each one: make it random per run, or add it to PUBLIC_JWT_SECRETS in src/Config.ts.
    expect(usable).toEqual([])
  })
})
