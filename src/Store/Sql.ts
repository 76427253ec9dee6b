/**
 * PostgreSQL: the process's pool (`PgLive`), a small pool of its own for the
 * API's outbox relay (`pgPool`), and the migrator that applies
 * the plain `.sql` files in `migrations/`. The stock file-system loaders only
 * read `NNNN_name.ts/js` modules, so a small `.sql` loader lives here.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as Migrator from "@effect/sql/Migrator"
import { Config, Effect, Layer, Schedule, String as Str } from "effect"
import { existsSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { DatabaseApplicationName, DatabaseConnectTimeout, DatabasePoolSize, DatabaseUrl } from "../Config.js"
import { isRefusedConnection, sqlState } from "./SqlState.js"

/** The project's `migrations/`: two folders up from this source file, one up from a bundle in dist/. */
export const MIGRATIONS_DIR = [new URL("../../migrations", import.meta.url), new URL("../migrations", import.meta.url)]
  .map((url) => fileURLToPath(url))
  .find((dir) => existsSync(Path.join(dir, "0001_init.sql"))) ??
  fileURLToPath(new URL("../migrations", import.meta.url))

/** A pool of `maxConnections`. Row names are snake_case in SQL and camelCase in TypeScript. */
export const pgPool = (maxConnections: Config.Config<number>) =>
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
  }).pipe(
    // A database that is still starting (compose, CI) should not kill the process; one that
    // answered and refused (no such database, wrong password) will not change its mind.
    Layer.retry(
      Schedule.exponential("200 millis").pipe(
        Schedule.union(Schedule.spaced("5 seconds")),
        Schedule.intersect(Schedule.recurs(10)),
        Schedule.whileInput((error: unknown) => !isRefusedConnection(error)),
        Schedule.tapInput((error: unknown) =>
          isRefusedConnection(error)
            ? Effect.void
            : Effect.logWarning(`PostgreSQL not reachable yet (${connectFailure(error)}), retrying`)
        )
      )
    ),
    Layer.tapError((error) => Effect.logError(`Cannot use PostgreSQL: ${connectFailure(error)}`))
  )

/** The process's pool: DATABASE_POOL_SIZE connections. */
export const PgLive = pgPool(DatabasePoolSize)

/** The driver's own reason, with what to do about the commonest one. */
const connectFailure = (error: unknown): string => {
  const cause = (error as { cause?: unknown } | undefined)?.cause
  const reason = cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error)
  return sqlState(error) === "3D000"
    ? `${reason} (create it, for example: createdb -h 127.0.0.1 -U root opsdesk)`
    : reason
}

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

/** Applies pending migrations; returns the ones it ran. Safe to run concurrently (table lock). */
export const runMigrations = migrator({ loader: sqlFileLoader(MIGRATIONS_DIR), table: "opsdesk_migrations" }).pipe(
  Effect.tap((ran) =>
    ran.length > 0
      ? Effect.logInfo(`Applied ${ran.length} migration(s): ${ran.map(([id, name]) => `${id}_${name}`).join(", ")}`)
      : Effect.logDebug("Database schema up to date")
  ),
  Effect.withSpan("Sql.runMigrations")
)
