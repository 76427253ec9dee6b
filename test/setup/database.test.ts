/**
 * A newcomer's database (src/Store/Sql.ts, src/Store/SqlState.ts), against the
 * real PostgreSQL of TEST_DATABASE_URL:
 * - a database DATABASE_URL names that does not exist is created (as the same
 *   role, through `postgres`), also by two processes starting at once;
 * - a missing role fails start-up at once with ONE line that names
 *   DATABASE_URL, the role and the fix, and never shows the password;
 * - a wrong password (28P01) and nothing listening (ECONNREFUSED) give their
 *   own one-line hints (the real 28P01 is in scripts/newcomer-check.sh: this
 *   server trusts loopback).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Config, Effect, Exit, Layer } from "effect"
import pg from "pg"
import { pgPool } from "../../src/Store/Sql.js"
import { connectionHint, DatabaseUnavailable } from "../../src/Store/SqlState.js"
import { freePort } from "../support/ApiProcess.js"
import { configFrom } from "../support/Env.js"
import { TEST_DATABASE_URL } from "../support/testDatabase.js"

const withDatabase = (name: string) => {
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

const adminQuery = async (text: string, values: Array<unknown> = []) => {
  const client = new pg.Client({ connectionString: withDatabase("postgres") })
  await client.connect()
  try {
    return await client.query(text, values)
  } finally {
    await client.end()
  }
}

const databaseExists = (name: string) =>
  Effect.promise(() => adminQuery("SELECT 1 FROM pg_database WHERE datname = $1", [name])).pipe(
    Effect.map((r) => r.rowCount === 1)
  )

const dropDatabase = (name: string) =>
  Effect.promise(() => adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).pipe(Effect.asVoid)

/** A pool on `url` as DATABASE_URL, and the database it is connected to. */
const currentDatabase = (url: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ db: string }>`SELECT current_database() AS db`).pipe(
    Effect.map((rows) => rows[0]!.db),
    Effect.provide(
      pgPool(Config.succeed(1)).pipe(Layer.provide(Layer.setConfigProvider(configFrom({ DATABASE_URL: url }))))
    )
  )

/** The failure of starting a pool on `url`, which must fail. */
const startFailure = (url: string) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(currentDatabase(url))
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
    expect(error?._tag).toBe("Some")
    return {
      error: error?._tag === "Some" ? error.value : undefined,
      pretty: Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
    }
  })

describe("a newcomer's database", () => {
  it.live("creates the database DATABASE_URL names when it is missing, also from two processes at once", () => {
    const name = `opsdesk_test_setup_create_${process.pid}`
    return Effect.gen(function*() {
      yield* dropDatabase(name)
      expect(yield* databaseExists(name)).toBe(false)
      const url = withDatabase(name)
      const both = yield* Effect.all([currentDatabase(url), currentDatabase(url)], { concurrency: 2 })
      expect(both).toEqual([name, name])
      expect(yield* databaseExists(name)).toBe(true)
      // An existing one is used as it is.
      expect(yield* currentDatabase(url)).toBe(name)
    }).pipe(Effect.ensuring(dropDatabase(name)))
  })

  it.live("a missing role fails at once with one line naming DATABASE_URL, without the password", () =>
    Effect.gen(function*() {
      const url = new URL(TEST_DATABASE_URL)
      url.username = "opsdesk_no_such_role"
      url.password = "hunter2-secret"
      const { error, pretty } = yield* startFailure(url.toString())
      expect(error).toBeInstanceOf(DatabaseUnavailable)
      const { code, message } = error as DatabaseUnavailable
      // 28000 under trust or peer; a server asking for a password answers 28P01 for an unknown role too.
      expect(["28000", "28P01"]).toContain(code)
      expect(message).toContain("DATABASE_URL")
      expect(message).toContain("opsdesk_no_such_role")
      expect(message).not.toContain("hunter2-secret")
      // What the entrypoint prints: one line.
      expect(pretty.trim().split("\n")).toEqual([`DatabaseUnavailable: ${message}`])
    }))

  it.live("nothing listening: a hint to start PostgreSQL, naming DATABASE_URL", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const url = `postgres://opsdesk:opsdesk@127.0.0.1:${port}/opsdesk`
      const refused = yield* Effect.promise(() =>
        new pg.Client({ connectionString: url }).connect().then(() => undefined, (e: unknown) => e)
      )
      const hint = connectionHint({ cause: refused }, url)
      expect(hint).toContain(`127.0.0.1:${port}`)
      expect(hint).toContain("DATABASE_URL")
      expect(hint).toContain("npm run services")
      expect(hint).not.toContain(":opsdesk@")
      expect(hint).not.toContain("\n")
    }))

  it("a wrong password: a hint to fix it in DATABASE_URL", () => {
    // The driver's error as node-postgres raises it for SQLSTATE 28P01.
    const cause = Object.assign(new Error(`password authentication failed for user "opsdesk"`), { code: "28P01" })
    const hint = connectionHint({ cause }, "postgres://opsdesk:wrong@db.example:5432/opsdesk")
    expect(hint).toBe(
      `PostgreSQL at db.example:5432 refused the password of "opsdesk" (password authentication failed for user "opsdesk"): set the right password in DATABASE_URL (now postgres://opsdesk:***@db.example:5432/opsdesk), or create the role (\`npm run services\` creates opsdesk/opsdesk)`
    )
  })
})
