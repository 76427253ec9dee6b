/** The migrations and the bootstrap admin, as one program (src/bin/migrate.ts, `opsdesk migrate`). */
import { Effect } from "effect"
import { LoggingLive } from "../Logging.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { ensureAdmin } from "../Users/Admin.js"

/** Applies pending migrations and makes sure the admin user exists. */
export const migrateProgram = Effect.gen(function*() {
  const ran = yield* runMigrations
  yield* Effect.logInfo(ran.length === 0 ? "Migrations: nothing to do" : `Migrations: applied ${ran.length}`)
  yield* ensureAdmin
}).pipe(Effect.provide(PgLive), Effect.provide(LoggingLive))
