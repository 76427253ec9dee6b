/**
 * `--json`: results on stdout as JSON, and an error as one JSON object on
 * stderr, `{"error": {"tag", "message", "exitCode", ...}}`, usage errors included.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ANSI, NO_BROKER, opsdesk } from "./support.js"

interface ErrorJson {
  readonly error: { readonly tag: string; readonly message: string; readonly exitCode: number; readonly kind?: string }
}

/** stderr in JSON mode: JSON lines (log lines, if any, then the error); the error is the last. */
const errorOf = (stderr: string): ErrorJson => {
  const lines = stderr.trim().split("\n")
  for (const line of lines) expect(() => JSON.parse(line)).not.toThrow()
  return JSON.parse(lines.at(-1)!) as ErrorJson
}

describe("opsdesk --json errors", () => {
  it.live("usage errors are JSON on stderr, with exit code 2 and nothing on stdout", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
        [["dlq", "replay", "--json"], /Choose exactly one of --all, --event-id ID or --event TYPE/],
        [["dlq", "list", "--json", "--limit", "0"], /--limit must be a positive integer/],
        [["dlq", "list", "--json", "--nope"], /--nope/],
        [["deliveries", "list", "--json", "--state", "lost"], /pending, failed, delivered/],
        [["maintain", "--json", "--dry-run", "extra"], /extra/]
      ]
      for (const [args, message] of cases) {
        const run = yield* opsdesk(args, NO_BROKER)
        expect({ args, code: run.code }).toEqual({ args, code: 2 })
        expect(run.stdout).toBe("")
        expect(run.stderr).not.toMatch(ANSI)
        const { error } = errorOf(run.stderr)
        expect(error.tag).toBe("UsageError")
        expect(error.exitCode).toBe(2)
        expect(error.message).toMatch(message)
      }
    }), 180_000)

  it.live(
    "a failure is JSON on stderr with exit code 1; without --json it is one line of text",
    () =>
      Effect.gen(function*() {
        for (
          const args of [["dlq", "list", "--json"], ["dlq", "replay", "--all", "--json"], [
            "dlq",
            "purge",
            "--yes",
            "--json"
          ]]
        ) {
          const run = yield* opsdesk(args, NO_BROKER)
          expect({ args, code: run.code }).toEqual({ args, code: 1 })
          expect(run.stdout).toBe("")
          expect(errorOf(run.stderr).error).toEqual({
            tag: "BrokerError",
            message:
              "Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:1 (AMQP_URL amqp://guest:***@127.0.0.1:1/nowhere)",
            exitCode: 1
          })
        }
        const text = yield* opsdesk(["dlq", "list"], NO_BROKER)
        expect(text.stderr).toMatch(/^Error: Cannot connect to RabbitMQ/)
      }),
    120_000
  )
})
