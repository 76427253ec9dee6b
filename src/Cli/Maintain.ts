/**
 * `opsdesk maintain [--dry-run] [--json]`: one retention run (src/Retention/)
 * now, with the windows of the environment (RETENTION_*, DLQ_REPLAY_WINDOW),
 * whether or not RETENTION_ENABLED lets the worker run it. The report goes
 * to stdout; a configuration that breaks the dedupe invariant is refused.
 */
import { Command, Options } from "@effect/cli"
import { Console, Duration, Effect } from "effect"
import { RetentionConfig } from "../Config.js"
import { describeWindows, type RunReport, runRetention } from "../Retention/Retention.js"
import { PgLive } from "../Store/Sql.js"
import { formatDuration, renderTable } from "./Format.js"
import { DATABASE_ENV, helpNode, OUTPUT_ENV } from "./Help.js"

const dryRun = Options.boolean("dry-run").pipe(
  Options.withDescription("Count the rows each table would lose, and remove nothing.")
)

const json = Options.boolean("json").pipe(
  Options.withDescription("Print the report as JSON instead of a table (errors too: one JSON object on stderr).")
)

export const reportJson = (report: RunReport) => ({
  dryRun: report.dryRun,
  millis: report.millis,
  claimsHeldBy: report.claimsHeldBy?.toISOString() ?? null,
  tables: report.tables.map((t) => ({
    table: t.table,
    windowMs: Duration.toMillis(t.window),
    cutoff: t.cutoff.toISOString(),
    removed: t.removed,
    batches: t.batches,
    vacuumed: t.vacuumed,
    millis: t.millis
  }))
})

const reportText = (report: RunReport) =>
  [
    renderTable(
      [
        { header: "TABLE" },
        { header: "KEPT FOR", align: "right" },
        { header: "CUTOFF" },
        { header: report.dryRun ? "WOULD REMOVE" : "REMOVED", align: "right" },
        { header: "BATCHES", align: "right" },
        { header: "TIME", align: "right" }
      ],
      report.tables.map((t) => [
        t.table,
        formatDuration(t.window),
        t.cutoff.toISOString(),
        String(t.removed),
        report.dryRun ? "-" : String(t.batches),
        `${t.millis} ms`
      ])
    ),
    ...(report.claimsHeldBy === null
      ? []
      : [
        `\nClaims are kept back to ${report.claimsHeldBy.toISOString()}: an outbox row created then is still unpublished, ` +
        "and the relay may yet publish its event again."
      ]),
    report.dryRun ? "\nDry run: nothing was removed." : ""
  ].join("\n").trimEnd()

export const maintainCommand = Command.make("maintain", { dryRun, json }, ({ dryRun, json }) =>
  Effect.gen(function*() {
    const cfg = yield* RetentionConfig
    if (!json) yield* Console.error(`Retention windows: ${describeWindows(cfg)}`)
    const report = yield* runRetention(cfg, { dryRun })
    yield* Console.log(json ? JSON.stringify(reportJson(report), null, 2) : reportText(report))
  }).pipe(Effect.provide(PgLive))).pipe(Command.withDescription(
    "Apply retention now: remove published outbox rows, processed-event claims, notifications and audit rows " +
      "older than their windows (RETENTION_*), in short batches. --dry-run only counts them."
  ))

export const maintainHelp = helpNode(maintainCommand, "maintain", {
  examples: [
    ["opsdesk maintain --dry-run", "How many rows each table would lose; removes nothing"],
    [
      "RETENTION_OUTBOX='3 days' opsdesk maintain --json",
      "Apply retention with a shorter outbox window; report as JSON"
    ]
  ],
  env: [...DATABASE_ENV, "RETENTION_*", "DLQ_REPLAY_WINDOW", ...OUTPUT_ENV]
})
