/**
 * Logs the seed's shutdown line when SIGTERM or SIGINT arrives. The runtime
 * (NodeRuntime.runMain) turns the signal into an interruption, which runs
 * every finalizer: the worker drains, then channels, connection, SQL pool and
 * Redis close in reverse order of acquisition.
 */
import { Effect, Layer } from "effect"
import { stdoutLine } from "./Logging.js"

export const ShutdownLog = Layer.scopedDiscard(
  Effect.acquireRelease(
    Effect.sync(() => {
      const on = (signal: NodeJS.Signals) => () => stdoutLine(`🛑 ${signal} received, shutting down gracefully...`)
      const term = on("SIGTERM")
      const int = on("SIGINT")
      process.once("SIGTERM", term)
      process.once("SIGINT", int)
      return { term, int }
    }),
    ({ int, term }) =>
      Effect.sync(() => {
        process.off("SIGTERM", term)
        process.off("SIGINT", int)
      })
  )
)
