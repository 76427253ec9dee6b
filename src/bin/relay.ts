/** Standalone outbox relay: `node dist/relay.mjs` once built (npm run start:relay), or `tsx src/bin/relay.ts`. */
import { NodeRuntime } from "@effect/platform-node"
import { relayProgram } from "../App/RelayProcess.js"

relayProgram.pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
