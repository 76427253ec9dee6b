/**
 * Colour: on for a terminal, off for NO_COLOR (any non-empty value), TERM=dumb
 * and output that is not a terminal (a pipe), in help pages and in the usage
 * errors @effect/cli renders (src/Cli/Output.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { colorEnabled } from "../../src/Cli/Output.js"
import { ANSI, opsdesk, opsdeskOnTerminal } from "./support.js"

describe("opsdesk colour", () => {
  it("colorEnabled follows NO_COLOR, TERM=dumb and the terminal", () => {
    expect(colorEnabled({ TERM: "xterm-256color" }, true)).toBe(true)
    expect(colorEnabled({ NO_COLOR: "", TERM: "xterm" }, true)).toBe(true)
    for (const value of ["1", "0", "yes", "true"]) expect(colorEnabled({ NO_COLOR: value }, true)).toBe(false)
    expect(colorEnabled({ TERM: "dumb" }, true)).toBe(false)
    expect(colorEnabled({ TERM: "xterm" }, false)).toBe(false)
  })

  it.live("a terminal gets colour; NO_COLOR and TERM=dumb turn it off there", () =>
    Effect.gen(function*() {
      const coloured = yield* opsdeskOnTerminal(["dlq", "replay", "--help"])
      expect(coloured.code).toBe(0)
      expect(coloured.stdout).toMatch(ANSI)
      const plainEnvs: ReadonlyArray<Record<string, string>> = [{ NO_COLOR: "1" }, { NO_COLOR: "yes" }, {
        TERM: "dumb"
      }]
      for (const env of plainEnvs) {
        const plain = yield* opsdeskOnTerminal(["dlq", "replay", "--help"], env)
        expect(plain.code).toBe(0)
        expect(plain.stdout).toContain("opsdesk dlq replay")
        expect(plain.stdout).not.toMatch(ANSI)
        const usage = yield* opsdeskOnTerminal(["dlq", "list", "--limit", "0"], env)
        expect(usage.code).toBe(2)
        expect(usage.stdout).toContain("--limit must be a positive integer")
        expect(usage.stdout).not.toMatch(ANSI)
      }
    }), 120_000)

  it.live("a pipe gets no colour: help, usage errors, failures", () =>
    Effect.gen(function*() {
      for (
        const args of [["--help"], ["dlq", "--help"], ["dlq", "list", "--limit", "0"], ["dlq", "replay"], ["nope"]]
      ) {
        const run = yield* opsdesk(args)
        expect(run.stdout + run.stderr).not.toBe("")
        expect(run.stdout).not.toMatch(ANSI)
        expect(run.stderr).not.toMatch(ANSI)
      }
    }), 120_000)
})
