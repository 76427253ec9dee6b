/**
 * `opsdesk dlq list | replay | purge`: the DLQ service (src/Dlq/Dlq.ts) on
 * the command line. Results go to stdout (JSON with --json), progress and
 * prompts to stderr / the terminal, errors to stderr with exit code 1 (2 for
 * a usage error).
 */
import { Command, HelpDoc, Options, Prompt, ValidationError } from "@effect/cli"
import { Console, Duration, Effect, Either, Option } from "effect"
import { DLQ } from "../Broker/Topology.js"
import { RetentionConfig } from "../Config.js"
import { Dlq, type ReplayProgress, type ReplayResult } from "../Dlq/Dlq.js"
import type { Selector } from "../Dlq/Entry.js"
import { CliError } from "./CliError.js"
import { formatAge, formatDuration, parseDuration, renderTable, truncate } from "./Format.js"
import { BROKER_ENV, helpNode, OUTPUT_ENV } from "./Help.js"

const invalid = (message: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message)))

// ---------------------------------------------------------------- dlq list

const limit = Options.integer("limit").pipe(
  Options.withAlias("n"),
  Options.withPseudoName("N"),
  Options.withDefault(50),
  Options.withDescription("Show at most this many messages (from the head of the queue)."),
  Options.mapEffect((n) => (n > 0 ? Effect.succeed(n) : invalid("--limit must be a positive integer")))
)

const eventFilter = Options.text("event").pipe(
  Options.withPseudoName("TYPE"),
  Options.withDescription("Only messages of this event type, e.g. message.sent."),
  Options.optional
)

const json = Options.boolean("json").pipe(
  Options.withDescription("Print JSON instead of text (errors too: one JSON object on stderr).")
)

export const listCommand = Command.make(
  "list",
  { limit, event: eventFilter, json },
  ({ event, json, limit }) =>
    Effect.gen(function*() {
      const dlq = yield* Dlq
      const depth = yield* dlq.depth
      const entries = yield* dlq.list({ limit, event: Option.getOrUndefined(event) })
      if (json) return yield* Console.log(JSON.stringify(entries, null, 2))
      const filter = Option.match(event, { onNone: () => "", onSome: (e) => ` of type ${e}` })
      if (entries.length === 0) {
        return yield* Console.log(depth === 0 ? `${DLQ} is empty.` : `${DLQ}: ${depth} message(s), none${filter}.`)
      }
      yield* Console.log(`${DLQ}: ${depth} message(s); showing ${entries.length}${filter}\n`)
      yield* Console.log(renderTable(
        [
          { header: "EVENT", maxWidth: 24 },
          { header: "EVENT ID", maxWidth: 36 },
          { header: "ROUTING KEY", maxWidth: 24 },
          { header: "ATTEMPTS", align: "right" },
          { header: "KIND" },
          { header: "ERROR", maxWidth: 70 },
          { header: "AGE", align: "right" }
        ],
        entries.map((e) => [
          e.event ?? "?",
          e.eventId ?? "-",
          e.originalRoutingKey ?? "-",
          e.attempts === null ? "-" : String(e.attempts),
          e.kind,
          e.error ?? "-",
          formatAge(e.ageSeconds)
        ])
      ))
    })
).pipe(Command.withDescription(`List the messages in ${DLQ} without removing them (they stay in the queue, in order).`))

// ---------------------------------------------------------------- dlq replay

const selector = Options.all({
  all: Options.boolean("all").pipe(Options.withDescription("Replay every replayable message.")),
  eventId: Options.text("event-id").pipe(
    Options.withPseudoName("ID"),
    Options.withDescription("Replay the message(s) of this event id."),
    Options.optional
  ),
  event: Options.text("event").pipe(
    Options.withPseudoName("TYPE"),
    Options.withDescription("Replay every message of this event type, e.g. message.sent."),
    Options.optional
  )
}).pipe(
  Options.mapEffect(({ all, event, eventId }): Effect.Effect<Selector, ValidationError.ValidationError> => {
    const chosen: Array<Selector> = [
      ...(all ? [{ all: true } as const] : []),
      ...Option.toArray(Option.map(eventId, (id) => ({ eventId: id }))),
      ...Option.toArray(Option.map(event, (type) => ({ event: type })))
    ]
    return chosen.length === 1
      ? Effect.succeed(chosen[0]!)
      : invalid("Choose exactly one of --all, --event-id ID or --event TYPE.")
  })
)

const PROGRESS_EVERY = 100

const force = Options.boolean("force").pipe(
  Options.withDescription(
    "Also replay messages older than DLQ_REPLAY_WINDOW (or of unknown age). Their event may have been processed " +
      "and its dedupe claim removed by retention since: it would run twice. Use it only for events never processed."
  )
)

const dryRun = Options.boolean("dry-run").pipe(
  Options.withDescription(
    "Only show what would be replayed and what skipped, and why; nothing is published or removed from the DLQ."
  )
)

const progressLine = (p: ReplayProgress) =>
  `  … ${p.scanned}/${p.total} scanned: ${p.replayed} replayed, ${p.skipped} skipped`

const summary = (selector: Selector, result: ReplayResult) => {
  const lines = [
    `Replayed ${result.replayed} message(s) to their original queues; ${result.skipped} skipped (${result.matched} matched, ${result.scanned} scanned).`
  ]
  for (const s of result.skippedMessages) {
    lines.push(`  skipped ${s.event ?? "?"} ${s.eventId ?? s.id}: ${truncate(s.reason, 200)}`)
  }
  if (result.skipped > result.skippedMessages.length) {
    lines.push(`  … and ${result.skipped - result.skippedMessages.length} more`)
  }
  if (result.skippedMessages.some((s) => s.tooOld)) {
    lines.push("  (messages skipped as too old can be replayed with --force; read its help first)")
  }
  if (result.matched === 0) {
    lines.splice(
      0,
      lines.length,
      "eventId" in selector
        ? `No message with event id ${selector.eventId} in ${DLQ}.`
        : "event" in selector
        ? `No ${selector.event} message in ${DLQ}; nothing replayed.`
        : `${DLQ} is empty; nothing replayed.`
    )
  }
  return lines.join("\n")
}

/** A dry run's report: what `Dlq.replay` decided for each matched message, with nothing published or removed. */
const planOf = (result: ReplayResult, replayWindow: Duration.Duration) => ({
  dryRun: true as const,
  scanned: result.scanned,
  matched: result.matched,
  replayWindowMs: Duration.toMillis(replayWindow),
  wouldReplay: result.plan?.wouldReplay ?? [],
  wouldSkip: result.plan?.wouldSkip ?? []
})

const planText = (plan: ReturnType<typeof planOf>) =>
  [
    `Dry run: would replay ${plan.wouldReplay.length} message(s) and skip ${plan.wouldSkip.length} ` +
    `(${plan.matched} matched, ${plan.scanned} scanned); nothing was changed.`,
    ...plan.wouldReplay.map((e) => `  replay ${e.event ?? "?"} ${e.eventId ?? e.id} (${formatAge(e.ageSeconds)} old)`),
    ...plan.wouldSkip.map((e) => `  skip   ${e.event ?? "?"} ${e.eventId ?? e.id}: ${truncate(e.reason, 200)}`)
  ].join("\n")

export const replayCommand = Command.make(
  "replay",
  { selector, force, dryRun, json },
  ({ dryRun, force, json, selector }) =>
    Effect.gen(function*() {
      const dlq = yield* Dlq
      if (dryRun) {
        const { dlqReplayWindow } = yield* RetentionConfig
        const plan = planOf(yield* dlq.replay(selector, { force, dryRun: true }), dlqReplayWindow)
        return yield* Console.log(json ? JSON.stringify(plan, null, 2) : planText(plan))
      }
      const result = yield* dlq.replay(selector, {
        force,
        progressEvery: PROGRESS_EVERY,
        // A line every 100 messages, for replays long enough to need one (not in JSON mode: stderr is for the error).
        onProgress: (
          p
        ) => (!json && p.total > PROGRESS_EVERY && p.scanned < p.total ? Console.error(progressLine(p)) : Effect.void)
      })
      yield* Console.log(json ? JSON.stringify(result, null, 2) : summary(selector, result))
      if (result.forced > 0) {
        yield* Console.error(
          `Warning: --force replayed ${result.forced} message(s) older than DLQ_REPLAY_WINDOW (or of unknown age): ` +
            "an event among them that was already processed, and whose claim retention removed, runs a second time."
        )
      }
      // Asked for one event and it did not go out: say so in the exit code too.
      if ("eventId" in selector && result.replayed === 0) {
        return yield* new CliError({
          message: result.matched === 0
            ? `Nothing replayed: event id ${selector.eventId} is not in ${DLQ}`
            : `Nothing replayed: event id ${selector.eventId} was skipped`
        })
      }
    })
).pipe(Command.withDescription(
  `Republish messages from ${DLQ} to opsdesk.events with their original routing key and a fresh retry count. ` +
    "Each is removed from the DLQ only after the broker confirmed its copy; poison messages are skipped, and so are " +
    "messages older than DLQ_REPLAY_WINDOW unless --force. " +
    "Choose exactly one of --all, --event-id or --event. --dry-run shows what would happen and changes nothing."
))

// ---------------------------------------------------------------- dlq purge

const olderThan = Options.text("older-than").pipe(
  Options.withPseudoName("DURATION"),
  Options.withDescription("Only messages that failed more than this long ago: 90s, 30m, 1h, 7d, 1h30m."),
  Options.mapEffect((s) => Either.match(parseDuration(s), { onLeft: invalid, onRight: Effect.succeed })),
  Options.optional
)

const yes = Options.boolean("yes").pipe(Options.withAlias("y"), Options.withDescription("Do not ask for confirmation."))

/** Asks on the terminal; without one (a script, a pipe) it refuses rather than guess. */
const confirmPurge = (olderThan: Option.Option<Duration.Duration>) =>
  Effect.gen(function*() {
    if (!process.stdin.isTTY) {
      return yield* new CliError({
        message: `Refusing to purge ${DLQ} without confirmation: stdin is not a terminal. Re-run with --yes to confirm.`
      })
    }
    const dlq = yield* Dlq
    const depth = yield* dlq.depth
    if (depth === 0) return false
    const what = Option.match(olderThan, {
      onNone: () => `Remove all ${depth} message(s) from ${DLQ}?`,
      onSome: (d) =>
        `Remove the messages in ${DLQ} that failed more than ${formatDuration(d)} ago (${depth} in the queue)?`
    })
    const ok = yield* Prompt.confirm({ message: `${what} This cannot be undone.`, initial: false })
    if (!ok) return yield* new CliError({ message: "Aborted; nothing was removed." })
    return true
  })

export const purgeCommand = Command.make(
  "purge",
  { olderThan, yes, json },
  ({ json, olderThan, yes }) =>
    Effect.gen(function*() {
      const dlq = yield* Dlq
      const olderThanMs = Option.getOrNull(Option.map(olderThan, Duration.toMillis))
      if (!yes && !(yield* confirmPurge(olderThan))) {
        return yield* Console.log(
          json ? JSON.stringify({ removed: 0, left: 0, olderThanMs }) : `${DLQ} is empty; nothing to purge.`
        )
      }
      const purged = yield* dlq.purge({ olderThan: Option.getOrUndefined(olderThan) })
      const left = yield* dlq.depth
      const which = Option.match(olderThan, { onNone: () => "", onSome: (d) => ` older than ${formatDuration(d)}` })
      yield* Console.log(
        json
          ? JSON.stringify({ removed: purged, left, olderThanMs })
          : `Removed ${purged} message(s)${which} from ${DLQ}; ${left} left.`
      )
    })
).pipe(Command.withDescription(
  `Remove messages from ${DLQ}: all of them, or with --older-than those that failed longer ago. ` +
    "Asks for confirmation unless --yes; without a terminal it refuses."
))

export const dlqCommand = Command.make("dlq").pipe(
  Command.withDescription(`Inspect and manage the dead-letter queue (${DLQ}).`),
  Command.withSubcommands([listCommand, replayCommand, purgeCommand]),
  Command.provide(Dlq.Default)
)

export const dlqHelp = helpNode(dlqCommand, "dlq", {
  examples: [["opsdesk dlq list", "What is in the DLQ, oldest first"]],
  env: [...BROKER_ENV, ...OUTPUT_ENV],
  children: [
    helpNode(listCommand, "list", {
      examples: [
        ["opsdesk dlq list --event ticket.created -n 10", "The first ten ticket.created messages"],
        ["opsdesk dlq list --json | jq '.[].eventId'", "The event ids, for a script"]
      ],
      env: [...BROKER_ENV, ...OUTPUT_ENV]
    }),
    helpNode(replayCommand, "replay", {
      examples: [
        ["opsdesk dlq replay --all --dry-run", "What would be replayed and what skipped; changes nothing"],
        ["opsdesk dlq replay --event-id 0b8f5f8e-6f7a-4c1e-9d2a-3b1c2d4e5f60", "Replay one event"],
        ["opsdesk dlq replay --event message.sent --json", "Replay every message.sent; the result as JSON"]
      ],
      env: [...BROKER_ENV, "DLQ_REPLAY_WINDOW", ...OUTPUT_ENV]
    }),
    helpNode(purgeCommand, "purge", {
      examples: [
        ["opsdesk dlq purge --older-than 7d", "Remove what failed more than a week ago (asks first)"],
        ["opsdesk dlq purge --yes", "Remove everything, without a question (scripts)"]
      ],
      env: [...BROKER_ENV, ...OUTPUT_ENV]
    })
  ]
})
