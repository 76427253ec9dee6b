/** Applies pending migrations and makes sure the admin user exists: `npm run migrate`. */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { LoggingLive } from "../Logging.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { ensureAdmin } from "../Users/Admin.js"

Effect.gen(function*() {
  const ran = yield* runMigrations
  yield* Effect.logInfo(ran.length === 0 ? "Migrations: nothing to do" : `Migrations: applied ${ran.length}`)
  yield* ensureAdmin
}).pipe(Effect.provide(PgLive), Effect.provide(LoggingLive), NodeRuntime.runMain({ disablePrettyLogger: true }))
