#!/usr/bin/env node
/**
 * The `opsdesk` command line: `npx tsx src/bin/opsdesk.ts --help`,
 * `npm run opsdesk -- dlq list`. See src/Cli/Main.ts.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { main } from "../Cli/Main.js"

// SIGTERM is a supervisor's request to stop (`opsdesk worker` drains and exits 0); Ctrl-C is the user aborting (130).
let terminated = false
process.once("SIGTERM", () => (terminated = true))

main(process.argv).pipe(
  Effect.tap((code) => Effect.sync(() => (process.exitCode = code))),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Ctrl-C during a DLQ operation: borrowed messages go back to the queue as the connection closes.
    teardown: (exit, onExit) =>
      onExit(
        Exit.isSuccess(exit)
          ? (process.exitCode === undefined ? 0 : Number(process.exitCode))
          : Cause.isInterruptedOnly(exit.cause)
          ? (terminated ? 0 : 130)
          : 1
      )
  })
)
