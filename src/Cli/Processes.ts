/**
 * `opsdesk api`, `opsdesk worker`, `opsdesk migrate`: each runs the existing
 * entrypoint module (src/bin/*.ts) in this process by importing it, so there
 * is one implementation of each process and `npm run start:worker` and
 * `opsdesk worker` are the same program. The entrypoint starts its own
 * `NodeRuntime.runMain` (signals, graceful shutdown, exit code); the CLI's own
 * run ends right after the import without exiting the process.
 */
import { Command } from "@effect/cli"
import { Effect } from "effect"
import { CliError } from "./CliError.js"
import { describe } from "../Kit/Cause.js"

const entrypoint = (name: "api" | "worker" | "migrate", description: string, load: () => Promise<unknown>) =>
  Command.make(name, {}, () =>
    Effect.tryPromise({
      try: load,
      catch: (cause) => new CliError({ message: `Cannot start the ${name}: ${describe(cause)}` })
    }).pipe(Effect.asVoid)).pipe(Command.withDescription(description))

export const apiCommand = entrypoint("api", "Run the HTTP API (src/bin/api.ts; same as npm run start:api).", () => import("../bin/api.js"))

export const workerCommand = entrypoint(
  "worker",
  "Run the worker that consumes the event queues (src/bin/worker.ts; same as npm run start:worker).",
  () => import("../bin/worker.js")
)

export const migrateCommand = entrypoint(
  "migrate",
  "Apply pending database migrations and ensure the admin user exists (src/bin/migrate.ts; same as npm run migrate).",
  () => import("../bin/migrate.js")
)
