/**
 * `opsdesk … --help`, rendered here from @effect/cli's own pieces
 * (`CommandDescriptor.getHelp`, `getUsage`, `HelpDoc`) because its built-in
 * help page (0.77) shows a sub-command's usage without the command path
 * (`$ replay …` for `opsdesk dlq replay`), has no place for examples, and
 * prints the value type's boilerplate ("A user-defined piece of text.") above
 * every option's own description. The page adds examples, the exit codes and
 * the environment variables the command reads.
 */
import { type CliConfig, type Command, CommandDescriptor, HelpDoc, Span, Usage } from "@effect/cli"
import { Duration } from "effect"
import { DEFAULTS } from "../Config.js"
import { ExitCode } from "./Output.js"

export interface HelpNode {
  readonly name: string
  readonly descriptor: CommandDescriptor.Command<unknown>
  readonly examples: ReadonlyArray<readonly [command: string, what: string]>
  /** The environment variables this command reads (names from ENVIRONMENT). */
  readonly env: ReadonlyArray<EnvName>
  readonly children: ReadonlyArray<HelpNode>
}

export const helpNode = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  name: Name,
  details: {
    readonly examples: HelpNode["examples"]
    readonly env?: ReadonlyArray<EnvName>
    readonly children?: ReadonlyArray<HelpNode>
  }
): HelpNode => ({
  name,
  descriptor: command.descriptor as CommandDescriptor.Command<unknown>,
  examples: details.examples,
  env: details.env ?? [],
  children: details.children ?? []
})

/** Every variable a command of the CLI reads (src/Config.ts), for `opsdesk --help`. */
export const ENVIRONMENT = {
  DATABASE_URL: "PostgreSQL (deliveries, maintain, api, worker, relay, migrate). " +
    `Default ${DEFAULTS.DATABASE_URL}.`,
  DATABASE_CONNECT_TIMEOUT_MS:
    `Longest wait for a database connection before failing (default ${DEFAULTS.DATABASE_CONNECT_TIMEOUT_MS}).`,
  AMQP_URL: `RabbitMQ, one URL or a comma-separated list of nodes (default ${DEFAULTS.AMQP_URL}).`,
  OPS_AMQP_URL: "RabbitMQ as the operator's user for `opsdesk dlq` (default: AMQP_URL).",
  AMQP_RECONNECT_INITIAL_MS:
    `First delay between broker connection attempts (default ${DEFAULTS.AMQP_RECONNECT_INITIAL_MS}).`,
  AMQP_RECONNECT_MAX_MS:
    `Longest delay between broker connection attempts (default ${DEFAULTS.AMQP_RECONNECT_MAX_MS}).`,
  QUEUE_TYPE: `classic or quorum: the queues' type, as the worker declares them (default ${DEFAULTS.QUEUE_TYPE}).`,
  DLQ_REPLAY_WINDOW: `Dead letters older than this are replayed only with --force (default ${
    Duration.format(DEFAULTS.DLQ_REPLAY_WINDOW)
  }).`,
  "RETENTION_*": "Retention windows and batch sizes for `opsdesk maintain` (see docs/OPS.md).",
  REDIS_URL: `Redis, for the processes (default ${DEFAULTS.REDIS_URL}).`,
  LOG_LEVEL: "Log lines shown: the CLI's own commands default to warn.",
  LOG_FORMAT: "text or json log lines.",
  NO_COLOR: "Any non-empty value turns colour off (as do TERM=dumb and output that is not a terminal).",
  TERM: "dumb turns colour off."
} as const
export type EnvName = keyof typeof ENVIRONMENT

export const OUTPUT_ENV: ReadonlyArray<EnvName> = ["LOG_LEVEL", "LOG_FORMAT", "NO_COLOR", "TERM"]
export const DATABASE_ENV: ReadonlyArray<EnvName> = ["DATABASE_URL", "DATABASE_CONNECT_TIMEOUT_MS"]
export const BROKER_ENV: ReadonlyArray<EnvName> = [
  "OPS_AMQP_URL",
  "AMQP_URL",
  "AMQP_RECONNECT_INITIAL_MS",
  "AMQP_RECONNECT_MAX_MS",
  "QUEUE_TYPE"
]

const EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [ExitCode.ok, "success"],
  [ExitCode.failure, "failure: unreachable database or broker, invalid configuration, a refused or partial operation"],
  [ExitCode.usage, "usage error: unknown command or option, missing or invalid value"]
]

/** The value type's boilerplate that @effect/cli puts above an option's own description. */
const BOILERPLATE = new Set(["A user-defined piece of text.", "A true or false value.", "An integer."])

const spanText = (span: Span.Span): string | undefined => (Span.isText(span) ? span.value : undefined)

const withoutBoilerplate = (doc: HelpDoc.HelpDoc): HelpDoc.HelpDoc => {
  if (HelpDoc.isParagraph(doc)) {
    const text = spanText(doc.value)
    return text !== undefined && BOILERPLATE.has(text) ? HelpDoc.empty : doc
  }
  if (HelpDoc.isSequence(doc)) return HelpDoc.sequence(withoutBoilerplate(doc.left), withoutBoilerplate(doc.right))
  if (HelpDoc.isDescriptionList(doc)) {
    return HelpDoc.mapDescriptionList(doc, (span, d) => [span, withoutBoilerplate(d)])
  }
  return doc
}

/** The node `path` names (its longest known prefix), with the names leading to it. */
export const findNode = (root: HelpNode, args: ReadonlyArray<string>): { node: HelpNode; path: Array<string> } => {
  let node = root
  const path = [root.name]
  for (const arg of args) {
    const child = node.children.find((c) => c.name === arg)
    if (child === undefined) break
    node = child
    path.push(child.name)
  }
  return { node, path }
}

/** Every command path of the tree, root first (`["opsdesk"]`, `["opsdesk", "dlq"]`, …). */
export const allPaths = (root: HelpNode): Array<Array<string>> => {
  const out: Array<Array<string>> = []
  const walk = (node: HelpNode, prefix: Array<string>) => {
    const path = [...prefix, node.name]
    out.push(path)
    node.children.forEach((c) => walk(c, path))
  }
  walk(root, [])
  return out
}

const section = (title: string, lines: ReadonlyArray<HelpDoc.HelpDoc>) =>
  lines.length === 0 ? HelpDoc.empty : HelpDoc.blocks([HelpDoc.h1(title), ...lines])

const indentedList = (rows: ReadonlyArray<readonly [string, string]>) => {
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => HelpDoc.p(`  ${k.padEnd(width)}  ${v}`))
}

export const renderHelp = (
  root: HelpNode,
  args: ReadonlyArray<string>,
  config: CliConfig.CliConfig,
  version: string
): HelpDoc.HelpDoc => {
  const { node, path } = findNode(root, args)
  const isRoot = node === root
  const prefix = path.slice(0, -1).join(" ")
  const usages = Usage.enumerate(CommandDescriptor.getUsage(node.descriptor), config).map((span) =>
    HelpDoc.p(Span.spans([
      Span.text(`$ ${prefix === "" ? "" : `${prefix} `}`),
      span,
      Span.text(node.children.length > 0 ? " <command> [options]" : "")
    ]))
  )
  const env = isRoot ? (Object.keys(ENVIRONMENT) as Array<EnvName>) : node.env
  return HelpDoc.blocks([
    HelpDoc.h1(Span.code(path.join(" "))),
    ...(isRoot ? [HelpDoc.p(`${root.name} ${version}`)] : []),
    section("USAGE", usages),
    withoutBoilerplate(CommandDescriptor.getHelp(node.descriptor, config)),
    section(
      "EXAMPLES",
      node.examples.flatMap(([command, what]) => [HelpDoc.p(`  # ${what}`), HelpDoc.p(`  $ ${command}`)])
    ),
    section("EXIT CODES", indentedList(EXIT_CODES.map(([code, what]) => [String(code), what]))),
    section(
      "ENVIRONMENT",
      [
        ...indentedList(env.map((name) => [name, ENVIRONMENT[name]])),
        ...(isRoot ? [] : [HelpDoc.p("  (every variable: opsdesk --help)")])
      ]
    ),
    ...(isRoot
      ? [HelpDoc.p("Add --json to any command for JSON output; its errors are then one JSON object on stderr.")]
      : [])
  ].filter((d) => !HelpDoc.isEmpty(d)))
}

/** `--help` or `-h` among the arguments (before `--`). */
export const helpRequested = (args: ReadonlyArray<string>): boolean => {
  const end = args.indexOf("--")
  const flags = end === -1 ? args : args.slice(0, end)
  return flags.includes("--help") || flags.includes("-h")
}
