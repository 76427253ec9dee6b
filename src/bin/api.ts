/** API entrypoint: `node dist/api.mjs` once built (npm run start:api), or `tsx src/bin/api.ts`. */
import { NodeRuntime } from "@effect/platform-node"
import { apiProgram } from "../App/ApiProcess.js"

apiProgram.pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
