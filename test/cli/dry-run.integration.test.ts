/**
 * `opsdesk dlq replay --all --dry-run` against a real RabbitMQ vhost: it
 * reports what a replay would do and leaves the DLQ (depth, order, messages)
 * and the event queues exactly as they were.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { DLQ, queueFor } from "../../src/Broker/Topology.js"
import { deadLetter, depth, dlqFixture, drain } from "../dlq/support.js"
import { messageSent, ticketCreated } from "../support/Env.js"
import { opsdesk } from "./support.js"

// The vhost and its topology: classic queues, the retry tiers the CLI expects.
const test = dlqFixture({ name: "clidryrun", queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })

interface Plan {
  readonly dryRun: true
  readonly scanned: number
  readonly matched: number
  readonly wouldReplay: ReadonlyArray<{ readonly eventId: string }>
  readonly wouldSkip: ReadonlyArray<{ readonly eventId: string | null; readonly kind: string; readonly reason: string }>
}

describe("opsdesk dlq replay --dry-run", () => {
  it.live(
    "reports the plan as text and JSON and changes nothing",
    () =>
      test(({ channel, url }) =>
        Effect.gen(function*() {
          const fresh = ticketCreated()
          const old = messageSent()
          yield* deadLetter(channel, fresh)
          yield* deadLetter(channel, old, { failedAt: new Date(Date.now() - 30 * 86_400_000) })
          yield* deadLetter(channel, { event: "message.sent", body: "{not json" })
          const env = { AMQP_URL: url, DLQ_REPLAY_WINDOW: "7 days" }

          const text = yield* opsdesk(["dlq", "replay", "--all", "--dry-run"], env)
          expect(text.stderr).toBe("")
          expect(text.code).toBe(0)
          const lines = text.stdout.trimEnd().split("\n")
          expect(lines[0]).toBe(
            "Dry run: would replay 1 message(s) and skip 2 (3 matched, 3 scanned); nothing was changed."
          )
          expect(lines[1]).toMatch(new RegExp(`^  replay ticket\\.created ${fresh.eventId} \\(\\d+s old\\)$`))
          expect(lines[2]).toMatch(
            new RegExp(`^  skip   message\\.sent ${old.eventId}: it failed 30d.* ago, longer than`)
          )
          expect(lines[3]).toMatch(
            /^ {2}skip {3}message\.sent \S+: poison message \(its body never decoded\); fix or discard it$/
          )

          const asJson = yield* opsdesk(["dlq", "replay", "--all", "--dry-run", "--json"], env)
          expect(asJson.code).toBe(0)
          const plan = JSON.parse(asJson.stdout) as Plan
          expect(plan.dryRun).toBe(true)
          expect([plan.scanned, plan.matched]).toEqual([3, 3])
          expect(plan.wouldReplay.map((e) => e.eventId)).toEqual([fresh.eventId])
          expect(plan.wouldSkip.map((e) => [e.eventId, e.kind])).toEqual([[old.eventId, "failed"], [null, "poison"]])

          const forced = JSON.parse(
            (yield* opsdesk(["dlq", "replay", "--event", "message.sent", "--force", "--dry-run", "--json"], env)).stdout
          ) as Plan
          expect(forced.wouldReplay.map((e) => e.eventId)).toEqual([old.eventId])
          expect(forced.matched).toBe(2)

          // Nothing moved: the DLQ holds the same three messages in the same order; no event queue got a copy.
          expect(yield* depth(channel, queueFor("ticket.created"))).toBe(0)
          expect(yield* depth(channel, queueFor("message.sent"))).toBe(0)
          const left = yield* drain(channel, DLQ)
          expect(left.map((m) => m.properties.messageId ?? null)).toEqual([fresh.eventId, old.eventId, null])
        })
      ),
    180_000
  )
})
