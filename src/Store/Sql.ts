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
import { Config, type ConfigError, Effect, Layer, Redacted, Schedule, String as Str } from "effect"
import { existsSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { DatabaseApplicationName, DatabaseConnectTimeout, DatabasePoolSize, DatabaseUrl } from "../Config.js"
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

/** A pool of `maxConnections`. Row names are snake_case in SQL and camelCase in TypeScript. */
const connect = (maxConnections: Config.Config<number>) =>
  PgClient.layerConfig({
    url: DatabaseUrl,
    maxConnections,
    // Without it, a database that accepts TCP but never answers (partition, paused server) hangs requests forever.
    connectTimeout: DatabaseConnectTimeout,
    applicationName: DatabaseApplicationName,
    transformQueryNames: Config.succeed(Str.camelToSnake),
    transformResultNames: Config.succeed(Str.snakeToCamel),
    // JSON columns (event envelopes, audit changes) are stored and read verbatim.
    transformJson: Config.succeed(false)
  })

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
}).pipe(Effect.withSpan("Sql.createDatabase"))

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
  Effect.withSpan("Sql.runMigrations")
)
