/**
 * `opsdesk deliveries list | retry`: notification deliveries (email, webhook;
 * src/Notifications/Repo.ts) on the command line, as `opsdesk dlq` does for the
 * DLQ. Results go to stdout (JSON with --json), errors to stderr with exit
 * code 1 (2 for a usage error).
 */
import { Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Console, Effect, Either, Option, Schema } from "effect"
import { BigintId } from "../Kit/Schemas.js"
import type { DeliveryChannel } from "../Notifications/Channel.js"
import { DeliveriesRepo, type DeliveryState } from "../Notifications/Repo.js"
import { PgLive } from "../Store/Sql.js"
import { CliError } from "./CliError.js"
import { formatAge, renderTable } from "./Format.js"
import { DATABASE_ENV, helpNode, OUTPUT_ENV } from "./Help.js"

const invalid = (message: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message)))

const channel = Options.choice("channel", ["email", "webhook"] as const).pipe(
  Options.withDescription("Only deliveries of this channel."),
  Options.optional
)

const json = Options.boolean("json").pipe(
  Options.withDescription("Print JSON instead of text (errors too: one JSON object on stderr).")
)

// ---------------------------------------------------------------- deliveries list

const state = Options.choice("state", ["pending", "failed", "delivered"] as const).pipe(
  Options.withDescription("Only deliveries in this state (default: every state)."),
  Options.optional
)

const limit = Options.integer("limit").pipe(
  Options.withAlias("n"),
  Options.withPseudoName("N"),
  Options.withDefault(50),
  Options.withDescription("Show at most this many deliveries, newest first."),
  Options.mapEffect((n) => (n > 0 && n <= 1000 ? Effect.succeed(n) : invalid("--limit must be between 1 and 1000")))
)

const secondsSince = (d: Date) => Math.max(0, (Date.now() - d.getTime()) / 1000)

export const listCommand = Command.make(
  "list",
  { state, channel, limit, json },
  ({ channel, json, limit, state }) =>
    Effect.gen(function*() {
      const repo = yield* DeliveriesRepo
      const filter = {
        state: Option.getOrUndefined<DeliveryState>(state),
        channel: Option.getOrUndefined<DeliveryChannel>(channel),
        limit
      }
      const [summary, rows] = yield* Effect.all([repo.summary, repo.list(filter)])
      if (json) return yield* Console.log(JSON.stringify({ summary, deliveries: rows }, null, 2))
      for (const s of summary) {
        yield* Console.log(
          `${s.channel}: ${s.pending} pending, ${s.failed} failed, ${s.delivered} delivered` +
            (s.oldestPendingSeconds === null ? "" : `; oldest pending ${formatAge(s.oldestPendingSeconds)}`)
        )
      }
      if (rows.length === 0) return yield* Console.log("\nNo deliveries match.")
      yield* Console.log("")
      yield* Console.log(renderTable(
        [
          { header: "ID", align: "right" },
          { header: "CHANNEL" },
          { header: "STATE" },
          { header: "EVENT", maxWidth: 22 },
          { header: "TO", maxWidth: 36 },
          { header: "TRIES", align: "right" },
          { header: "LAST ERROR", maxWidth: 60 },
          { header: "AGE", align: "right" }
        ],
        rows.map((r) => [
          r.id,
          r.channel,
          r.state,
          r.eventType,
          r.recipientId ?? r.subscriptionId ?? "-",
          String(r.attempts),
          r.lastError ?? "-",
          formatAge(secondsSince(r.createdAt))
        ])
      ))
    })
).pipe(Command.withDescription(
  "List notification deliveries (email, webhook), newest first, after a summary per channel: pending, failed, " +
    "delivered, and how long the oldest pending one has waited."
))

// ---------------------------------------------------------------- deliveries retry

type RetryTarget = { readonly ids: ReadonlyArray<string> } | { readonly channel: DeliveryChannel | undefined }

const target = Options.all({
  ids: Options.text("id").pipe(
    Options.withPseudoName("ID"),
    Options.withDescription("Retry this failed delivery (repeatable)."),
    Options.repeated
  ),
  allFailed: Options.boolean("all-failed").pipe(
    Options.withDescription("Retry every failed delivery (of --channel, if given).")
  ),
  channel
}).pipe(
  Options.mapEffect(({ allFailed, channel, ids }): Effect.Effect<RetryTarget, ValidationError.ValidationError> => {
    if (ids.length > 0 && !allFailed && Option.isNone(channel)) {
      const decoded = Either.all(ids.map((id) => Schema.decodeEither(BigintId)(id)))
      return Either.isRight(decoded)
        ? Effect.succeed({ ids: [...new Set(decoded.right)] })
        : invalid("--id takes the numeric id that `opsdesk deliveries list` shows")
    }
    if (ids.length === 0 && allFailed) return Effect.succeed({ channel: Option.getOrUndefined(channel) })
    return invalid("Choose either --id ID (repeatable) or --all-failed [--channel CHANNEL].")
  })
)

export const retryCommand = Command.make("retry", { target, json }, ({ json, target }) =>
  Effect.gen(function*() {
    const repo = yield* DeliveriesRepo
    const retried = yield* repo.retry(target, { actorId: null, via: "cli" })
    if (json) yield* Console.log(JSON.stringify({ retried }))
    else {yield* Console.log(
        `Retried ${retried.length} failed delivery(ies)${retried.length ? `: ${retried.join(", ")}` : ""}.`
      )}
    if ("ids" in target && retried.length < target.ids.length) {
      const skipped = target.ids.filter((id) => !retried.includes(id))
      return yield* new CliError({ message: `Not retried (no such delivery, or not failed): ${skipped.join(", ")}` })
    }
  })).pipe(Command.withDescription(
    "Put failed deliveries back to pending, due now, with a fresh run of retries; the dispatchers are woken at once. " +
      "Their earlier attempts stay in the log."
  ))

export const deliveriesCommand = Command.make("deliveries").pipe(
  Command.withDescription("Inspect and retry notification deliveries (email, webhook)."),
  Command.withSubcommands([listCommand, retryCommand]),
  Command.provide(DeliveriesRepo.Default),
  Command.provide(PgLive)
)

const env = [...DATABASE_ENV, ...OUTPUT_ENV]

export const deliveriesHelp = helpNode(deliveriesCommand, "deliveries", {
  examples: [["opsdesk deliveries list --state failed", "What failed, and why"]],
  env,
  children: [
    helpNode(listCommand, "list", {
      examples: [
        ["opsdesk deliveries list --state failed --channel webhook", "Failed webhook deliveries"],
        ["opsdesk deliveries list --json -n 200", "The 200 newest deliveries and the summary, as JSON"]
      ],
      env
    }),
    helpNode(retryCommand, "retry", {
      examples: [
        ["opsdesk deliveries retry --id 42 --id 43", "Retry two failed deliveries"],
        ["opsdesk deliveries retry --all-failed --channel email", "Retry every failed email"]
      ],
      env
    })
  ]
})
