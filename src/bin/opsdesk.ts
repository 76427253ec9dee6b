#!/usr/bin/env node
/**
 * The `opsdesk` command line: `npx tsx src/bin/opsdesk.ts --help`,
 * `npm run opsdesk -- dlq list`. See src/Cli/Main.ts.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { main } from "../Cli/Main.js"

main(process.argv).pipe(
  // Exit naturally: `opsdesk worker` and friends keep running the process they started.
  Effect.flatMap((code) => Effect.sync(() => (process.exitCode = code === 0 ? process.exitCode : code))),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Ctrl-C during a DLQ operation: borrowed messages go back to the queue as the connection closes.
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
  })
)
