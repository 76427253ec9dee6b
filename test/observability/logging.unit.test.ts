/**
 * JSON and logfmt logs never carry an empty message: an entry logged with
 * nothing but a Cause (the runtime's report of a failed program) takes the
 * cause's first line, where Effect's loggers wrote `"message":[]` (read as an
 * empty line by whoever reads messages, the chaos harness among them).
 */
import { describe, expect, it, vi } from "@effect/vitest"
import { Cause, ConfigProvider, Effect } from "effect"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { LoggingLive, stdoutLine } from "../../src/Logging.js"

/** What console.log receives until `restore`. */
const spyConsoleLog = () => {
  const lines: Array<string> = []
  const spy = vi.spyOn(globalThis.console, "log").mockImplementation((...args: Array<unknown>) => {
    lines.push(args.map(String).join(" "))
  })
  return { lines, restore: () => spy.mockRestore() }
}

/** Lines reach the console at the end of the event-loop turn (stdoutLine). */
const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const logged = (format: "json" | "logfmt", log: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const console = spyConsoleLog()
    yield* log.pipe(
      Effect.provide(LoggingLive),
      Effect.ensuring(Effect.zipRight(nextTurn, Effect.sync(console.restore)))
    )
    return console.lines
  }).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["LOG_FORMAT", format], ["LOG_LEVEL", "info"]])))
  )

describe("log formats", () => {
  it.effect("json: a cause-only entry gets the cause's first line as its message", () =>
    Effect.gen(function*() {
      const [line] = yield* logged("json", Effect.logError(Cause.fail(new Error("listen EADDRINUSE :::3000"))))
      const entry = JSON.parse(line!) as { message: unknown; logLevel: string; cause?: string }
      expect(entry.logLevel).toBe("ERROR")
      expect(entry.message).toBe("Error: listen EADDRINUSE :::3000")
      expect(entry.cause).toContain("EADDRINUSE")
    }))

  it.effect("json: an entry with a message is written as Effect writes it", () =>
    Effect.gen(function*() {
      const [line] = yield* logged("json", Effect.logWarning("RabbitMQ unavailable", Cause.fail("x")))
      expect((JSON.parse(line!) as { message: unknown }).message).toBe("RabbitMQ unavailable")
    }))

  it.effect("logfmt: a cause-only entry has a message too", () =>
    Effect.gen(function*() {
      const [line] = yield* logged("logfmt", Effect.logWarning(Cause.die(new Error("connect ETIMEDOUT"))))
      expect(line).toMatch(/message="?Error: connect ETIMEDOUT/)
    }))
})

describe("stdout lines", () => {
  it.live("the lines of one event-loop turn go out in one write, in order", () =>
    Effect.gen(function*() {
      const console = spyConsoleLog()
      stdoutLine("first")
      stdoutLine("second")
      const before = console.lines.length
      yield* nextTurn
      stdoutLine("third")
      yield* nextTurn
      console.restore()
      expect(before).toBe(0)
      expect(console.lines).toEqual(["first\nsecond", "third"])
    }))

  it.live("a process that exits in the same turn still writes its last lines", () =>
    Effect.sync(() => {
      const logging = fileURLToPath(new URL("../../src/Logging.ts", import.meta.url))
      const code = `const { stdoutLine } = await import(${JSON.stringify(logging)})
stdoutLine("one"); stdoutLine("two"); process.exit(3)`
      const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
        encoding: "utf8",
        timeout: 60_000
      })
      expect(child.status).toBe(3)
      expect(child.stdout).toBe("one\ntwo\n")
    }))
})
