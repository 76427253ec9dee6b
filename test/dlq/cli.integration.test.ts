/**
 * `opsdesk` end to end: the built binary as a child process
 * (`node dist/opsdesk.mjs ...`, built by test/globalSetup.ts), stdin closed,
 * AMQP_URL pointing at a vhost of this file's own. Usage errors exit with 2,
 * failures with 1 (test/cli/ covers colour, JSON and help).
 */
import { describe, expect, it } from "@effect/vitest"
import type { ConfirmChannel } from "amqplib"
import { Effect } from "effect"
import { queueFor } from "../../src/Broker/Topology.js"
import { opsdesk as opsdeskBuilt, type Run } from "../cli/support.js"
import { messageSent, ticketCreated } from "../support/Env.js"
import { deadLetter, depth, dlqFixture } from "./support.js"

const fixture = dlqFixture({ name: "dlqcli", queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })

/** Runs `opsdesk <args>` with stdin closed (not a terminal). */
const opsdesk = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  opsdeskBuilt(args, { NO_COLOR: "1", ...env })

const test = <A, E>(
  body: (
    env: {
      readonly url: string
      readonly channel: ConfirmChannel
      readonly run: (...args: Array<string>) => Effect.Effect<Run>
    }
  ) => Effect.Effect<A, E>
) => fixture(({ channel, url }) => body({ url, channel, run: (...args) => opsdesk(args, { AMQP_URL: url }) }))

// Strips ANSI styling from @effect/cli's help and error output.
const plain = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "")

describe("opsdesk CLI", () => {
  it.live(
    "dlq list prints a table of what is in the DLQ and leaves it there",
    () =>
      test(({ channel, run }) =>
        Effect.gen(function*() {
          const failed = ticketCreated()
          yield* deadLetter(channel, failed, {
            error: "Simulated failure",
            attempts: 3,
            failedAt: new Date(Date.now() - 2 * 3_600_000 - 60_000)
          })
          yield* deadLetter(channel, { event: "message.sent", body: "{not json" }, {
            error: "Body is not valid JSON (Unexpected token n)"
          })

          const { code, stderr, stdout } = yield* run("dlq", "list")
          expect(stderr).toBe("")
          expect(code).toBe(0)
          const lines = stdout.trimEnd().split("\n")
          expect(lines[0]).toBe("tickets.dlq: 2 message(s); showing 2")
          expect(lines[2]).toMatch(/^EVENT\s+EVENT ID\s+ROUTING KEY\s+ATTEMPTS\s+KIND\s+ERROR\s+AGE$/)
          expect(lines[3]).toMatch(
            new RegExp(
              `^ticket\\.created\\s+${failed.eventId}\\s+ticket\\.created\\s+3\\s+failed\\s+Simulated failure\\s+2h$`
            )
          )
          expect(lines[4]).toMatch(
            /^message\.sent\s+-\s+message\.sent\s+1\s+poison\s+Body is not valid JSON \(Unexpected token n\)\s+\d+s$/
          )
          expect(yield* depth(channel)).toBe(2)

          const asJson = yield* run("dlq", "list", "--json", "--limit", "1")
          expect(asJson.code).toBe(0)
          const entries = JSON.parse(asJson.stdout) as Array<{ eventId: string; kind: string }>
          expect(entries.map((e) => [e.eventId, e.kind])).toEqual([[failed.eventId, "failed"]])

          const filtered = yield* run("dlq", "list", "--event", "ticket.updated")
          expect(filtered.stdout.trim()).toBe("tickets.dlq: 2 message(s), none of type ticket.updated.")

          const bad = yield* run("dlq", "list", "--limit", "0")
          expect(bad.code).toBe(2)
          expect(plain(bad.stderr)).toContain("--limit must be a positive integer")
          expect(yield* depth(channel)).toBe(2)
        })
      ),
    120_000
  )

  it.live(
    "dlq purge refuses without --yes when stdin is not a terminal; with --yes and --older-than it keeps recent ones",
    () =>
      test(({ channel, run }) =>
        Effect.gen(function*() {
          const recent = messageSent()
          yield* deadLetter(channel, ticketCreated(), { failedAt: new Date(Date.now() - 3 * 3_600_000) })
          yield* deadLetter(channel, recent)

          const refused = yield* run("dlq", "purge")
          expect(refused.code).toBe(1)
          expect(refused.stdout).toBe("")
          expect(refused.stderr.trim()).toBe(
            "Error: Refusing to purge tickets.dlq without confirmation: stdin is not a terminal. Re-run with --yes to confirm."
          )
          expect(yield* depth(channel)).toBe(2)

          const badDuration = yield* run("dlq", "purge", "--older-than", "soon", "--yes")
          expect(badDuration.code).toBe(2)
          expect(plain(badDuration.stderr)).toContain("Invalid duration \"soon\"")
          expect(yield* depth(channel)).toBe(2)

          const purged = yield* run("dlq", "purge", "--older-than", "1h", "--yes")
          expect(purged.code).toBe(0)
          expect(purged.stdout.trim()).toBe("Removed 1 message(s) older than 1h from tickets.dlq; 1 left.")
          expect(yield* depth(channel)).toBe(1)
        })
      ),
    120_000
  )

  it.live(
    "dlq replay needs exactly one selector, replays by event id, and shows progress on long replays",
    () =>
      test(({ channel, run }) =>
        Effect.gen(function*() {
          const none = yield* run("dlq", "replay")
          expect(none.code).toBe(2)
          expect(plain(none.stderr)).toContain("Choose exactly one of --all, --event-id ID or --event TYPE.")
          const two = yield* run("dlq", "replay", "--all", "--event", "ticket.created")
          expect(two.code).toBe(2)
          expect(plain(two.stderr)).toContain("Choose exactly one")

          const target = messageSent()
          yield* deadLetter(channel, ticketCreated())
          yield* deadLetter(channel, target)
          const one = yield* run("dlq", "replay", "--event-id", target.eventId)
          expect(one.code).toBe(0)
          expect(one.stdout.trim()).toBe(
            "Replayed 1 message(s) to their original queues; 0 skipped (1 matched, 2 scanned)."
          )
          expect(yield* depth(channel, queueFor("message.sent"))).toBe(1)
          expect(yield* depth(channel)).toBe(1)

          const missing = yield* run("dlq", "replay", "--event-id", target.eventId)
          expect(missing.code).toBe(1)
          expect(missing.stdout.trim()).toBe(`No message with event id ${target.eventId} in tickets.dlq.`)
          expect(missing.stderr.trim()).toBe(
            `Error: Nothing replayed: event id ${target.eventId} is not in tickets.dlq`
          )

          for (let i = 0; i < 149; i++) yield* deadLetter(channel, ticketCreated())
          yield* deadLetter(channel, { event: "message.sent", body: "{not json" })
          const all = yield* run("dlq", "replay", "--all")
          expect(all.code).toBe(0)
          expect(all.stderr).toBe("  … 100/151 scanned: 100 replayed, 0 skipped\n")
          expect(all.stdout).toContain(
            "Replayed 150 message(s) to their original queues; 1 skipped (151 matched, 151 scanned)."
          )
          expect(all.stdout).toMatch(/skipped message\.sent .*poison message/)
          expect(yield* depth(channel)).toBe(1)

          // Asked for one event that cannot be replayed: the reason, and exit code 1.
          yield* deadLetter(channel, {
            event: "message.sent",
            body: JSON.stringify({ event: "message.sent", eventId: "bad-1" })
          })
          const poison = yield* run("dlq", "replay", "--event-id", "bad-1")
          expect(poison.code).toBe(1)
          expect(poison.stdout).toContain("skipped message.sent bad-1: poison message")
          expect(poison.stderr.trim()).toBe("Error: Nothing replayed: event id bad-1 was skipped")
          expect(yield* depth(channel)).toBe(2)
        })
      ),
    180_000
  )

  it.live(
    "a broker that is down is a clear error and exit code 1; --help works, with the command path",
    () =>
      Effect.gen(function*() {
        const down = yield* opsdesk(["dlq", "list"], { AMQP_URL: "amqp://guest:secret@127.0.0.1:1/nowhere" })
        expect(down.code).toBe(1)
        expect(down.stdout).toBe("")
        expect(down.stderr.trim()).toBe(
          "Error: Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:1 (AMQP_URL amqp://guest:***@127.0.0.1:1/nowhere)"
        )

        const help = yield* opsdesk(["--help"])
        expect(help.code).toBe(0)
        for (const command of ["api", "worker", "migrate", "dlq list", "dlq replay", "dlq purge"]) {
          expect(plain(help.stdout)).toContain(`- ${command}`)
        }
        const purgeHelp = yield* opsdesk(["dlq", "purge", "--help"])
        expect(purgeHelp.code).toBe(0)
        expect(plain(purgeHelp.stdout)).toContain("--older-than DURATION")
        expect(plain(purgeHelp.stdout)).toContain("$ opsdesk dlq purge [--older-than DURATION]")
      }),
    120_000
  )
})
