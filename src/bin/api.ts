/** API entrypoint: `node --import tsx src/bin/api.ts` (npm run start:api). */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { ApiAppLive } from "../Api/Main.js"
import { FatalLive, runUntilFatal } from "../Fatal.js"
import { LoggingLive } from "../Logging.js"
import { ShutdownLog } from "../Shutdown.js"

runUntilFatal(Layer.launch(Layer.merge(ApiAppLive, ShutdownLog))).pipe(
  Effect.provide(FatalLive),
  Effect.provide(LoggingLive),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
