/** Exit codes: 0 success, 1 failure, 2 usage error (as `opsdesk --help` states them). */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { NO_BROKER, opsdesk } from "./support.js"

describe("opsdesk exit codes", () => {
  it.live(
    "2 for a usage error: unknown command or flag, missing selector, invalid value",
    () =>
      Effect.gen(function*() {
        for (
          const args of [
            ["nope"],
            ["dlq", "list", "--nope"],
            ["dlq", "replay"],
            ["dlq", "replay", "--all", "--event", "ticket.created"],
            ["dlq", "list", "--limit", "0"],
            ["dlq", "list", "--limit", "many"],
            ["dlq", "purge", "--older-than", "soon", "--yes"],
            ["deliveries", "list", "--state", "lost"],
            ["deliveries", "retry"]
          ]
        ) {
          const run = yield* opsdesk(args, NO_BROKER)
          expect({ args, code: run.code }).toEqual({ args, code: 2 })
          expect(run.stdout).toBe("")
          expect(run.stderr.trim()).not.toBe("")
        }
      }),
    180_000
  )

  it.live("1 for a failure (the broker is down), 0 for success", () =>
    Effect.gen(function*() {
      const down = yield* opsdesk(["dlq", "list"], NO_BROKER)
      expect(down.code).toBe(1)
      expect(down.stderr.trim()).toBe(
        "Error: Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:1 (AMQP_URL amqp://guest:***@127.0.0.1:1/nowhere)"
      )
      const dryRun = yield* opsdesk(["dlq", "replay", "--all", "--dry-run"], NO_BROKER)
      expect(dryRun.code).toBe(1)

      for (const args of [["--help"], ["--version"], ["dlq", "replay", "--help"], []]) {
        expect((yield* opsdesk(args)).code).toBe(0)
      }
      const help = yield* opsdesk(["--help"])
      expect(help.stdout).toMatch(/EXIT CODES\s+0\s+success\s+1\s+failure[^\n]*\s+2\s+usage error/)
    }), 120_000)
})
