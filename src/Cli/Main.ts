/**
 * The `opsdesk` command line, one binary for every operation:
 *
 *   opsdesk api | worker | relay | migrate    run a process (the existing entrypoints)
 *   opsdesk dlq list [--limit N] [--event TYPE] [--json]
 *   opsdesk dlq replay (--all | --event-id ID | --event TYPE) [--force] [--dry-run] [--json]
 *   opsdesk dlq purge [--older-than 1h] [--yes] [--json]
 *   opsdesk maintain [--dry-run] [--json]   retention now (src/Retention)
 *   opsdesk deliveries list [--state S] [--channel C] [--limit N] [--json]
 *   opsdesk deliveries retry (--id ID... | --all-failed [--channel C]) [--json]
 *
 * `main` runs it and turns every failure into one line on stderr (one JSON
 * object with --json) and an exit code: 0 on success, 1 on a failure (broker or
 * database down, refusal), 2 on a usage error (unknown option, missing or
 * invalid value). `--help` pages come from Help.ts; colour and JSON from Output.ts.
 */
import { CliConfig, Command, HelpDoc, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, ConfigError, ConfigProvider, Console, Effect, Redacted } from "effect"
import { amqpNodeUrls, AmqpUrl } from "../Config.js"
import { loggingTo } from "../Logging.js"
import { deliveriesCommand, deliveriesHelp } from "./Deliveries.js"
import { dlqCommand, dlqHelp } from "./Dlq.js"
import { findNode, helpNode, helpRequested, renderHelp } from "./Help.js"
import { maintainCommand, maintainHelp } from "./Maintain.js"
import {
  type ErrorReport,
  ExitCode,
  makeConsole,
  type OutputMode,
  outputMode,
  stripAnsi,
  writeError
} from "./Output.js"
import {
  apiCommand,
  apiHelp,
  migrateCommand,
  migrateHelp,
  relayCommand,
  relayHelp,
  workerCommand,
  workerHelp
} from "./Processes.js"

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

/** The command tree as `--help` walks it, with each command's examples and environment. */
export const helpTree = helpNode(opsdesk, "opsdesk", {
  examples: [
    ["opsdesk dlq list", "What is in the dead-letter queue?"],
    ["opsdesk dlq replay --all --dry-run", "What would a replay of everything do?"],
    ["opsdesk deliveries list --state failed --json", "Failed notification deliveries, as JSON"],
    ["opsdesk dlq replay --help", "Help on one command"]
  ],
  children: [apiHelp, workerHelp, relayHelp, migrateHelp, dlqHelp, maintainHelp, deliveriesHelp]
})

const cli = Command.run(opsdesk, { name: "opsdesk", version: VERSION })
const cliConfigValues = CliConfig.defaultConfig

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

type Failure = Effect.Effect.Error<ReturnType<typeof cli>>

const failure = (tag: string, message: string): ErrorReport => ({ tag, message, exitCode: ExitCode.failure })

const describeFailure = (error: Failure): Effect.Effect<ErrorReport> => {
  if (ValidationError.isValidationError(error)) {
    return Effect.succeed({
      tag: "UsageError",
      kind: error._tag,
      message: stripAnsi(HelpDoc.toAnsiText(error.error)).trim(),
      exitCode: ExitCode.usage
    })
  }
  if (ConfigError.isConfigError(error)) {
    return Effect.succeed(failure("ConfigError", `Invalid configuration: ${String(error)}`))
  }
  switch (error._tag) {
    case "BrokerError":
      return Effect.map(brokerHint, (hint) => failure(error._tag, `${error.message}${hint}`))
    case "QuitException":
      return Effect.succeed(failure(error._tag, "Aborted."))
    default:
      return Effect.succeed(failure(error._tag, error.message))
  }
}

/**
 * Log lines stay out of the CLI's output unless LOG_LEVEL asks for them; with
 * --json they are JSON too (unless LOG_FORMAT says otherwise), so stderr is JSON lines.
 */
const cliConfig = (mode: OutputMode) =>
  ConfigProvider.fromEnv().pipe(
    ConfigProvider.orElse(() =>
      ConfigProvider.fromMap(new Map([["LOG_LEVEL", "warn"], ...(mode.json ? [["LOG_FORMAT", "json"] as const] : [])]))
    )
  )

/** `--help` anywhere, or a command that only groups others (`opsdesk`, `opsdesk dlq`) given alone. */
const wantsHelp = (args: ReadonlyArray<string>) => {
  if (helpRequested(args)) return true
  const { node, path } = findNode(helpTree, args)
  return node.children.length > 0 && args.length === path.length - 1
}

/** Runs the command line for `argv` (as in `process.argv`) in `mode`; succeeds with the exit code. */
export const run = (argv: ReadonlyArray<string>, mode: OutputMode): Effect.Effect<number> =>
  Effect.consoleWith((base) => {
    const reported = (report: ErrorReport, printed = false) =>
      writeError(base, mode, report, printed).pipe(Effect.as(report.exitCode))
    const args = argv.slice(2)
    const program = wantsHelp(args)
      ? Console.log(HelpDoc.toAnsiText(renderHelp(helpTree, args, cliConfigValues, VERSION))).pipe(
        Effect.as(ExitCode.ok)
      )
      : cli(argv).pipe(
        Effect.as(ExitCode.ok),
        // @effect/cli has already printed a usage error as text.
        Effect.catchAll((error) =>
          Effect.flatMap(describeFailure(error), (r) => reported(r, ValidationError.isValidationError(error)))
        )
      )
    return program.pipe(
      Effect.provide(NodeContext.layer),
      // LOG_LEVEL / LOG_FORMAT themselves can be invalid.
      Effect.provide(loggingTo("stderr")),
      Effect.catchAll((error) => reported(failure("ConfigError", `Invalid configuration: ${String(error)}`))),
      Effect.catchAllDefect((defect) =>
        reported(failure("Defect", `Unexpected failure: ${Cause.pretty(Cause.die(defect))}`))
      ),
      Effect.withConfigProvider(cliConfig(mode)),
      Effect.withConsole(makeConsole(base, mode))
    )
  })

/** `run` with colour and JSON as the environment and the arguments ask. */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.flatMap(outputMode(argv.slice(2)), (mode) => run(argv, mode))
