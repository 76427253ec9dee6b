/**
 * Logging: `LOG_FORMAT` = `pretty` (default: one line, the message first, then
 * the annotations as key=value), `json` (one JSON object per line, for
 * production) or `logfmt`. `LOG_LEVEL` sets the minimum level (Info).
 */
import { Cause, Config, HashMap, Inspectable, Layer, List, Logger } from "effect"
import { LoggingConfig } from "./Config.js"

const time = (d: Date) => d.toISOString().slice(11, 23)

const render = (value: unknown) => {
  const s = typeof value === "string" ? value : Inspectable.format(value)
  return /[\s="]/.test(s) ? JSON.stringify(s) : s
}

/** Human-readable, one line per entry. The seed's emoji lines read as the seed shows them. */
const prettyTo = (write: (line: string) => void) =>
  Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
    const parts = (Array.isArray(message) ? message : [message]).map((m) =>
      typeof m === "string" ? m : Inspectable.format(m)
    )
    let line = `${time(date)} ${logLevel.label.padEnd(5)} ${parts.join(" ")}`
    const extras: Array<string> = []
    for (const [key, value] of HashMap.toEntries(annotations)) extras.push(`${key}=${render(value)}`)
    for (const span of List.toArray(spans)) extras.push(`${span.label}=${date.getTime() - span.startTime}ms`)
    if (extras.length > 0) line += `  ${extras.join(" ")}`
    if (!Cause.isEmpty(cause)) line += `\n${Cause.pretty(cause, { renderErrorCause: true })}`
    write(line)
  })

/**
 * Writes a line to stdout at the end of the current event-loop turn, with the
 * other lines of that turn in one write. Node writes to a pipe synchronously
 * on Linux, so a line per event was a system call, and a wake-up of whoever
 * reads the pipe, per line (README, Benchmarks). An exiting process writes
 * what is left before it goes. Hand-written: Effect's `Logger.batched` flushes
 * on a timer, and its buffer is lost when the process exits.
 */
export const stdoutLine: (line: string) => void = (() => {
  let lines: Array<string> = []
  const flush = () => {
    process.off("exit", flush)
    if (lines.length === 0) return
    const text = lines.join("\n")
    lines = []
    // Through the console, which ignores a closed stdout (EPIPE) instead of failing the process.
    globalThis.console.log(text)
  }
  return (line: string) => {
    if (lines.push(line) > 1) return
    setImmediate(flush)
    process.once("exit", flush)
  }
})()

export const prettyLine = prettyTo(stdoutLine)

/**
 * An entry logged with nothing but a Cause (the runtime's report of a program
 * that failed is `Effect.logError(cause)`) has an empty message: Effect's JSON
 * and logfmt loggers then write `"message":[]` and put everything under
 * `cause`, so whoever reads messages (a log search, the chaos harness) sees an
 * empty line. Such an entry takes the cause's first line as its message.
 */
const withMessageFromCause = <O>(logger: Logger.Logger<unknown, O>) =>
  Logger.mapInputOptions(logger, (options: Logger.Logger.Options<unknown>) => {
    const parts = Array.isArray(options.message) ? options.message : [options.message]
    const empty = parts.every((m) => m === undefined || m === "")
    if (!empty || Cause.isEmpty(options.cause)) return options
    const first = Cause.pretty(options.cause).split("\n").find((l) => l.trim() !== "") ?? "failure"
    return { ...options, message: first.trim() }
  })

/**
 * The logger for `LOG_FORMAT` and `LOG_LEVEL`, writing to stdout (the services) or stderr (the CLI, whose stdout
 * carries only its result: a table, or JSON for `--json`).
 */
export const loggingTo = (sink: "stdout" | "stderr") => {
  const toSink = <M>(logger: Logger.Logger<M, string>) =>
    sink === "stdout" ? Logger.map(logger, stdoutLine) : Logger.withConsoleError(logger)
  const pretty = sink === "stdout" ? prettyLine : prettyTo((line) => globalThis.console.error(line))
  return Layer.unwrapEffect(
    LoggingConfig.pipe(
      Config.map(({ format, level }) =>
        Layer.merge(
          format === "json"
            ? Logger.replace(Logger.defaultLogger, toSink(withMessageFromCause(Logger.jsonLogger)))
            : format === "logfmt"
            ? Logger.replace(Logger.defaultLogger, toSink(withMessageFromCause(Logger.logfmtLogger)))
            : Logger.replace(Logger.defaultLogger, pretty),
          Logger.minimumLogLevel(level)
        )
      )
    )
  )
}

export const LoggingLive = loggingTo("stdout")
