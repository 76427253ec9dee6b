/**
 * `opsdesk api`, `opsdesk worker`, `opsdesk relay`, `opsdesk migrate`: the same programs that
 * src/bin/* run (src/App/Programs.ts), in the CLI's own runtime. They read
 * the environment as it is: the CLI's quieter default LOG_LEVEL is for its
 * own commands, not for a service it starts.
 */
import { Command } from "@effect/cli"
import { ConfigError, ConfigProvider, Effect } from "effect"
import { apiProgram, migrateProgram, relayProgram, workerProgram } from "../App/Programs.js"
import { describe } from "../Kit/Cause.js"
import { CliError } from "./CliError.js"

const processCommand = <E>(
  name: "api" | "worker" | "relay" | "migrate",
  description: string,
  program: Effect.Effect<unknown, E>
) =>
  Command.make(name, {}, () =>
    program.pipe(
      Effect.asVoid,
      Effect.mapError((
        e
      ) => (ConfigError.isConfigError(e) ? e : new CliError({ message: `The ${name} stopped: ${describe(e)}` }))),
      Effect.withConfigProvider(ConfigProvider.fromEnv())
    )).pipe(
      Command.withDescription(description)
    )

export const apiCommand = processCommand(
  "api",
  "Run the HTTP API and its outbox relay (same as npm run start:api).",
  apiProgram
)

export const workerCommand = processCommand(
  "worker",
  "Run the worker that consumes the event queues (same as npm run start:worker).",
  workerProgram
)

export const relayCommand = processCommand(
  "relay",
  "Run the outbox relay on its own, for APIs started with OUTBOX_RELAY=off (same as npm run start:relay).",
  relayProgram
)

export const migrateCommand = processCommand(
  "migrate",
  "Apply pending database migrations and ensure the admin user exists (same as npm run migrate).",
  migrateProgram
)
