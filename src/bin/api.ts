/** API entrypoint: `node dist/api.mjs` once built (npm run start:api), or `tsx src/bin/api.ts`. */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { ApiAppLive } from "../App/ApiProcess.js"
import { FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"

runUntilFatal(Layer.launch(Layer.merge(ApiAppLive, ShutdownLog))).pipe(
  Effect.provide(FatalLive),
  Effect.provide(LoggingLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
