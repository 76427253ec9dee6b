/** Worker entrypoint: `node --import tsx src/bin/worker.ts` (npm run start:worker). */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"
import { WorkerAppLive } from "../Worker/Main.js"

runUntilFatal(Layer.launch(Layer.merge(WorkerAppLive, ShutdownLog))).pipe(
  Effect.provide(FatalLive),
  Effect.provide(LoggingLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
