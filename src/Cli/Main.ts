/**
 * The `opsdesk` command line, one binary for every operation:
 *
 *   opsdesk api | worker | relay | migrate    run a process (the existing entrypoints)
 *   opsdesk dlq list [--limit N] [--event TYPE] [--json]
 *   opsdesk dlq replay (--all | --event-id ID | --event TYPE)
 *   opsdesk dlq purge [--older-than 1h] [--yes]
 *   opsdesk maintain [--dry-run] [--json]   retention now (src/Retention)
 *   opsdesk deliveries list [--state S] [--channel C] [--limit N] [--json]
 *   opsdesk deliveries retry (--id ID... | --all-failed [--channel C]) [--json]
 *
 * `main` runs it and turns every failure into one line on stderr and an exit
 * code: 0 on success, 1 on any error (bad arguments, broker down, refusal).
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, ConfigError, ConfigProvider, Console, Effect, Redacted } from "effect"
import { amqpNodeUrls, AmqpUrl } from "../Config.js"
import { LoggingLive } from "../Logging.js"
import { deliveriesCommand } from "./Deliveries.js"
import { dlqCommand } from "./Dlq.js"
import { maintainCommand } from "./Maintain.js"
import { apiCommand, migrateCommand, relayCommand, workerCommand } from "./Processes.js"

export const VERSION = "0.1.0"

export const opsdesk = Command.make("opsdesk").pipe(
  Command.withDescription(
    "OpsDesk operations: run the API, the worker, the relay or the migrations, and manage the dead-letter queue."
  ),
  Command.withSubcommands([
    apiCommand,
    workerCommand,
    relayCommand,
    migrateCommand,
    dlqCommand,
    maintainCommand,
    deliveriesCommand
  ])
)

const cli = Command.run(opsdesk, { name: "opsdesk", version: VERSION })

/** `amqp://guest:***@host:5672/vhost` (each node of a list): where we tried to connect, without the password. */
const brokerHint = AmqpUrl.pipe(
  Effect.map((url) => {
    try {
      const nodes = amqpNodeUrls(Redacted.value(url)).map((node) => {
        const u = new URL(node)
        if (u.password) u.password = "***"
        return u.toString()
      })
      return ` (AMQP_URL ${nodes.join(",")})`
    } catch {
      return ""
    }
  }),
  Effect.orElseSucceed(() => "")
)

const fail = (message: string) => Console.error(`Error: ${message}`).pipe(Effect.as(1))

type Failure = Effect.Effect.Error<ReturnType<typeof cli>>

const report = (error: Failure): Effect.Effect<number> => {
  // @effect/cli has already printed what was wrong with the arguments.
  if (ValidationError.isValidationError(error)) return Effect.succeed(1)
  if (ConfigError.isConfigError(error)) return fail(`Invalid configuration: ${String(error)}`)
  switch (error._tag) {
    case "BrokerError":
      return Effect.flatMap(brokerHint, (hint) => fail(`${error.message}${hint}`))
    case "QuitException":
      return fail("Aborted.")
    default:
      return fail(error.message)
  }
}

/** Log lines stay out of the CLI's output unless LOG_LEVEL asks for them. */
const cliConfig = ConfigProvider.fromEnv().pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromMap(new Map([["LOG_LEVEL", "warn"]])))
)

/** Runs the command line for `argv` (as in `process.argv`); succeeds with the exit code. */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  cli(argv).pipe(
    Effect.as(0),
    Effect.catchAll(report),
    Effect.provide(NodeContext.layer),
    // LOG_LEVEL / LOG_FORMAT themselves can be invalid.
    Effect.provide(LoggingLive),
    Effect.catchAll((error) => fail(`Invalid configuration: ${String(error)}`)),
    Effect.catchAllDefect((defect) => fail(`Unexpected failure: ${Cause.pretty(Cause.die(defect))}`)),
    Effect.withConfigProvider(cliConfig)
  )
