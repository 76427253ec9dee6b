/**
 * JSON and logfmt logs never carry an empty message: an entry logged with
 * nothing but a Cause (the runtime's report of a failed program) takes the
 * cause's first line, where Effect's loggers wrote `"message":[]` (read as an
 * empty line by whoever reads messages, the chaos harness among them).
 */
import { describe, expect, it, vi } from "@effect/vitest"
import { Cause, ConfigProvider, Effect } from "effect"
import { LoggingLive } from "../../src/Logging.js"

const logged = (format: "json" | "logfmt", log: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const spy = vi.spyOn(globalThis.console, "log").mockImplementation((...args: Array<unknown>) => {
      lines.push(args.map(String).join(" "))
    })
    yield* log.pipe(Effect.provide(LoggingLive), Effect.ensuring(Effect.sync(() => spy.mockRestore())))
    return lines
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
