/** Worker entrypoint: `node dist/worker.mjs` once built (npm run start:worker), or `tsx src/bin/worker.ts`. */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"
import { WorkerAppLive } from "../App/WorkerProcess.js"

runUntilFatal(Layer.launch(Layer.merge(WorkerAppLive, ShutdownLog))).pipe(
  Effect.provide(FatalLive),
  Effect.provide(LoggingLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
