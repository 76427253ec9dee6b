/**
 * `opsdesk api`, `opsdesk worker`, `opsdesk relay`, `opsdesk migrate`: the same programs that
 * src/bin/* run (each beside its layer graph in src/App), in the CLI's own runtime. They read
 * the environment as it is: the CLI's quieter default LOG_LEVEL is for its
 * own commands, not for a service it starts. `--json` makes their log lines
 * JSON (LOG_FORMAT=json) and a failure one JSON object on stderr.
 */
import { Command, Options } from "@effect/cli"
import { ConfigError, ConfigProvider, Effect } from "effect"
import { apiProgram } from "../App/ApiProcess.js"
import { migrateProgram } from "../App/MigrateProcess.js"
import { relayProgram } from "../App/RelayProcess.js"
import { workerProgram } from "../App/WorkerProcess.js"
import { describe } from "../Kit/Cause.js"
import { CliError } from "./CliError.js"
import { BROKER_ENV, DATABASE_ENV, type EnvName, type HelpNode, helpNode } from "./Help.js"

const json = Options.boolean("json").pipe(
  Options.withDescription("Log lines as JSON (LOG_FORMAT=json); a failure is one JSON object on stderr.")
)

const jsonLogs = ConfigProvider.fromMap(new Map([["LOG_FORMAT", "json"]])).pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromEnv())
)

const processCommand = <E>(
  name: "api" | "worker" | "relay" | "migrate",
  description: string,
  program: Effect.Effect<unknown, E>
) =>
  Command.make(name, { json }, ({ json }) =>
    program.pipe(
      Effect.asVoid,
      Effect.mapError((
        e
      ) => (ConfigError.isConfigError(e) ? e : new CliError({ message: `The ${name} stopped: ${describe(e)}` }))),
      Effect.withConfigProvider(json ? jsonLogs : ConfigProvider.fromEnv())
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

const processHelp = <Name extends "api" | "worker" | "relay" | "migrate", R, E, A>(
  command: Command.Command<Name, R, E, A>,
  name: Name,
  what: string,
  env: ReadonlyArray<EnvName>
): HelpNode =>
  helpNode(command, name, {
    examples: [[`opsdesk ${name}`, what], [`opsdesk ${name} --json`, "The same, with JSON log lines"]],
    env: [...env, "LOG_LEVEL", "LOG_FORMAT"]
  })

export const apiHelp = processHelp(apiCommand, "api", "Serve the API on PORT (default 3000)", [
  ...DATABASE_ENV,
  "REDIS_URL",
  "AMQP_URL"
])
export const workerHelp = processHelp(workerCommand, "worker", "Consume the event queues until SIGTERM", [
  ...DATABASE_ENV,
  "REDIS_URL",
  ...BROKER_ENV.filter((n) => n !== "OPS_AMQP_URL")
])
export const relayHelp = processHelp(relayCommand, "relay", "Publish the outbox to RabbitMQ", [
  ...DATABASE_ENV,
  "AMQP_URL"
])
export const migrateHelp = processHelp(migrateCommand, "migrate", "Bring the database schema up to date", [
  ...DATABASE_ENV
])
