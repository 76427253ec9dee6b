/** Worker entrypoint: `node dist/worker.mjs` once built (npm run start:worker), or `tsx src/bin/worker.ts`. */
import { NodeRuntime } from "@effect/platform-node"
import { workerProgram } from "../App/WorkerProcess.js"

workerProgram.pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
