/**
 * Each OpsDesk process as one program, so that `src/bin/*` (npm start:*) and
 * the `opsdesk` CLI run the same thing and neither imports the other.
 * A program runs until it is interrupted (SIGTERM/SIGINT through
 * NodeRuntime.runMain: every finalizer runs) or something raises Fatal.
 */
import { Effect, Layer } from "effect"
import { type Fatal, FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { ensureAdmin } from "../Users/Admin.js"
import { ApiAppLive } from "./ApiProcess.js"
import { RelayAppLive } from "./RelayProcess.js"
import { WorkerAppLive } from "./WorkerProcess.js"

const runProcess = <E>(app: Layer.Layer<never, E, Fatal>) =>
  runUntilFatal(Layer.launch(Layer.merge(app, ShutdownLog))).pipe(
    Effect.provide(FatalLive),
    Effect.provide(LoggingLive)
  )

/** The HTTP API with its in-process outbox relay. */
export const apiProgram = runProcess(ApiAppLive)

/** The worker that consumes the event queues. */
export const workerProgram = runProcess(WorkerAppLive)

/** The outbox relay on its own (the APIs then run with OUTBOX_RELAY=off, or keep theirs: several relays are safe). */
export const relayProgram = runProcess(RelayAppLive)

/** Applies pending migrations and makes sure the admin user exists. */
export const migrateProgram = Effect.gen(function*() {
  const ran = yield* runMigrations
  yield* Effect.logInfo(ran.length === 0 ? "Migrations: nothing to do" : `Migrations: applied ${ran.length}`)
  yield* ensureAdmin
}).pipe(Effect.provide(PgLive), Effect.provide(LoggingLive))
