/**
 * How an app layer runs as an OpsDesk process: until it is interrupted
 * (SIGTERM/SIGINT through NodeRuntime.runMain: every finalizer runs) or
 * something raises Fatal, with the process's logging and its shutdown log.
 * Each process's program sits beside its layer graph (ApiProcess.ts,
 * WorkerProcess.ts, RelayProcess.ts, MigrateProcess.ts), so that src/bin/*
 * and the `opsdesk` CLI run the same thing, and an entrypoint's bundle holds
 * its own process only.
 */
import { Effect, Layer } from "effect"
import { type Fatal, FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"

export const runProcess = <E>(app: Layer.Layer<never, E, Fatal>) =>
  runUntilFatal(Layer.launch(Layer.merge(app, ShutdownLog))).pipe(
    Effect.provide(FatalLive),
    Effect.provide(LoggingLive)
  )
