/**
 * PostgreSQL: the process's pool (`PgLive`), a small pool of its own for the
 * API's outbox relay (`pgPool`), and the migrator that applies
 * the plain `.sql` files in `migrations/`. The stock file-system loaders only
 * read `NNNN_name.ts/js` modules, so a small `.sql` loader lives here.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as Migrator from "@effect/sql/Migrator"
import { SqlError } from "@effect/sql/SqlError"
import { type Config, type ConfigError, Duration, Effect, Layer, Redacted, Schedule, String as Str } from "effect"
import { existsSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Pg from "pg"
import {
  DatabaseApplicationName,
  DatabaseConnectTimeout,
  DatabasePoolSize,
  DatabasePreparedStatements,
  DatabaseUrl
} from "../Config.js"
import { traced } from "../Observability/Span.js"
import {
  connectionHint,
  DatabaseUnavailable,
  displayUrl,
  driverReason,
  DUPLICATE_DATABASE,
  isRefusedConnection,
  sqlState,
  UNDEFINED_DATABASE,
  UNIQUE_VIOLATION
} from "./SqlState.js"

/** The project's `migrations/`: two folders up from this source file, one up from a bundle in dist/. */
export const MIGRATIONS_DIR = [new URL("../../migrations", import.meta.url), new URL("../migrations", import.meta.url)]
  .map((url) => fileURLToPath(url))
  .find((dir) => existsSync(Path.join(dir, "0001_init.sql"))) ??
  fileURLToPath(new URL("../migrations", import.meta.url))

type Pool = PgClient.PgClient | SqlClient.SqlClient

/**
 * The mark of a statement that runs as a named prepared statement: its text
 * starts with this comment. PostgreSQL then parses and plans it once per
 * connection instead of on every execution (README, Benchmarks, for what it
 * saves). Only for statements of one fixed text: every distinct marked text
 * is a statement each connection keeps.
 */
export const PREPARED = "/* prepared */ "

/** Distinct marked texts given a name; any beyond run unnamed (a marked statement whose text varies by mistake). */
const MAX_PREPARED = 64
const preparedNames = new Map<string, string>()
const nameFor = (text: string): string | undefined => {
  let name = preparedNames.get(text)
  if (name === undefined && preparedNames.size < MAX_PREPARED) {
    name = `opsdesk_${preparedNames.size + 1}`
    preparedNames.set(text, name)
  }
  return name
}

/**
 * node-postgres prepares a statement when its query has a `name`, which
 * @effect/sql-pg never passes: this client names the marked ones. (No
 * library adds it; sql-pg 0.53 exposes only the pool.)
 */
class PreparingClient extends Pg.Client {}
const clientQuery = Pg.Client.prototype.query as (this: Pg.Client, ...args: ReadonlyArray<unknown>) => unknown
Object.defineProperty(PreparingClient.prototype, "query", {
  value(this: Pg.Client, config: unknown, ...rest: ReadonlyArray<unknown>) {
    if (typeof config === "string" && config.startsWith(PREPARED) && Array.isArray(rest[0])) {
      const name = nameFor(config)
      if (name !== undefined) return clientQuery.call(this, { name, text: config, values: rest[0] }, ...rest.slice(1))
    }
    return clientQuery.call(this, config, ...rest)
  }
})

/** A pool of `maxConnections`. Row names are snake_case in SQL and camelCase in TypeScript. */
const connect = (maxConnections: Config.Config<number>) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const url = yield* DatabaseUrl
      const max = yield* maxConnections
      // Without it, a database that accepts TCP but never answers (partition, paused server) hangs requests forever.
      const connectTimeout = yield* DatabaseConnectTimeout
      const applicationName = yield* DatabaseApplicationName
      const prepared = yield* DatabasePreparedStatements
      // As PgClient.make builds it, with the preparing client: the first query proves the server answers.
      const acquire = Effect.acquireRelease(
        Effect.suspend(() => {
          const pool = new Pg.Pool({
            connectionString: Redacted.value(url),
            max,
            connectionTimeoutMillis: Duration.toMillis(connectTimeout),
            application_name: applicationName,
            ...(prepared ? { Client: PreparingClient } : {})
          })
          pool.on("error", () => {})
          return Effect.tryPromise({
            try: () => pool.query("SELECT 1"),
            catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
          }).pipe(
            Effect.timeoutFail({
              duration: connectTimeout,
              onTimeout: () =>
                new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
            }),
            Effect.onError(() => Effect.promise(() => pool.end()).pipe(Effect.timeoutOption(1000))),
            Effect.as(pool)
          )
        }),
        (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
      )
      return PgClient.layerFromPool({
        acquire,
        applicationName,
        transformQueryNames: Str.camelToSnake,
        transformResultNames: Str.snakeToCamel,
        // JSON columns (event envelopes, audit changes) are stored and read verbatim.
        transformJson: false
      })
    })
  )

/**
 * Creates the database DATABASE_URL names, connected with the same role and
 * password to the server's `postgres` database (so a fresh server needs only
 * the role: `npm run services`, or compose's). Another process creating it at
 * the same moment is fine.
 */
export const createDatabase = Effect.gen(function*() {
  const url = Redacted.value(yield* DatabaseUrl)
  const name = decodeURIComponent(new URL(url).pathname.slice(1))
  const admin = new URL(url)
  admin.pathname = "/postgres"
  const created = yield* Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql.unsafe(`CREATE DATABASE "${name.replace(/"/g, "\"\"")}"`)
  ).pipe(
    Effect.as(true),
    Effect.provide(PgClient.layer({ url: Redacted.make(admin.toString()), maxConnections: 1 })),
    Effect.catchIf(
      (error) => [DUPLICATE_DATABASE, UNIQUE_VIOLATION].includes(sqlState(error) ?? ""),
      () => Effect.succeed(false)
    ),
    Effect.mapError((error) =>
      new DatabaseUnavailable({
        code: sqlState(error),
        message: `PostgreSQL at ${admin.host} has no database "${name}", and creating it failed (${
          driverReason(error)
        }): create it as a role with CREATEDB, or fix DATABASE_URL (now ${displayUrl(url)})`
      })
    )
  )
  if (created) yield* Effect.logInfo(`Created database "${name}" (DATABASE_URL named it and it did not exist)`)
}).pipe(traced("Sql.createDatabase"))

/**
 * A pool of `maxConnections` on DATABASE_URL, creating the database when it is
 * missing. A server that is still starting (compose, CI) is waited for; one
 * that refused (no role, wrong password) fails at once with a one-line hint.
 */
export const pgPool = (
  maxConnections: Config.Config<number>
): Layer.Layer<Pool, ConfigError.ConfigError | DatabaseUnavailable> =>
  connect(maxConnections).pipe(
    Layer.catchAll((error): Layer.Layer<Pool, ConfigError.ConfigError | SqlError | DatabaseUnavailable> =>
      sqlState(error) === UNDEFINED_DATABASE
        ? Layer.unwrapEffect(Effect.as(createDatabase, connect(maxConnections)))
        : Layer.fail(error)
    ),
    Layer.retry(
      Schedule.exponential("200 millis").pipe(
        Schedule.union(Schedule.spaced("5 seconds")),
        Schedule.intersect(Schedule.recurs(10)),
        Schedule.whileInput((error: unknown) => !(error instanceof DatabaseUnavailable) && !isRefusedConnection(error)),
        Schedule.tapInput((error: unknown) =>
          error instanceof DatabaseUnavailable || isRefusedConnection(error)
            ? Effect.void
            : Effect.logWarning(`PostgreSQL not reachable yet (${driverReason(error)}), retrying`)
        )
      )
    ),
    Layer.catchAll((error): Layer.Layer<Pool, ConfigError.ConfigError | DatabaseUnavailable> =>
      error instanceof SqlError
        ? Layer.unwrapEffect(
          Effect.flatMap(DatabaseUrl, (url) =>
            Effect.fail(
              new DatabaseUnavailable({ code: sqlState(error), message: connectionHint(error, Redacted.value(url)) })
            ))
        )
        : Layer.fail(error)
    )
  )

/** The process's pool: DATABASE_POOL_SIZE connections. */
export const PgLive = pgPool(DatabasePoolSize)

/** Reads `migrations/NNNN_name.sql`; each file runs as one multi-statement query. */
export const sqlFileLoader = (dir: string): Migrator.Loader =>
  Effect.tryPromise({
    try: () => readdir(dir),
    catch: (cause) =>
      new Migrator.MigrationError({ reason: "import-error", message: `Cannot read ${dir}: ${String(cause)}` })
  }).pipe(
    Effect.map((files) =>
      files
        .flatMap((file) => {
          const match = /^(\d+)_([\w-]+)\.sql$/.exec(file)
          if (match === null) return []
          const load = Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const text = yield* Effect.promise(() => readFile(Path.join(dir, file), "utf8"))
            return sql.unsafe(text).pipe(Effect.asVoid)
          })
          return [[Number(match[1]), match[2]!, load] as const]
        })
        .sort((a, b) => a[0] - b[0])
    )
  )

const migrator = Migrator.make({})

/**
 * The migrator's table, created under an advisory lock. The migrator creates it
 * itself after a failed `::regclass` probe, with no IF NOT EXISTS: two processes
 * starting on a fresh database at once (the API and the worker: npm start, the
 * chaos run, compose) both probe, both create, and the loser fails with 42P07 or
 * 23505 on pg_type and exits. The lock is released at the end of the transaction.
 */
const ensureMigrationsTable = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.withTransaction(Effect.zipRight(
    sql`SELECT pg_advisory_xact_lock(hashtext('opsdesk_migrations'))`,
    sql`CREATE TABLE IF NOT EXISTS opsdesk_migrations (
      migration_id integer PRIMARY KEY,
      created_at timestamp with time zone NOT NULL DEFAULT now(),
      name text NOT NULL
    )`
  )))

/** Applies pending migrations; returns the ones it ran. Safe to run concurrently (advisory lock, then table lock). */
export const runMigrations = ensureMigrationsTable.pipe(
  Effect.zipRight(migrator({ loader: sqlFileLoader(MIGRATIONS_DIR), table: "opsdesk_migrations" })),
  Effect.tap((ran) =>
    ran.length > 0
      ? Effect.logInfo(`Applied ${ran.length} migration(s): ${ran.map(([id, name]) => `${id}_${name}`).join(", ")}`)
      : Effect.logDebug("Database schema up to date")
  ),
  traced("Sql.runMigrations")
)
