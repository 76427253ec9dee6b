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
export const prettyLine = Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
  const parts = (Array.isArray(message) ? message : [message]).map((m) =>
    typeof m === "string" ? m : Inspectable.format(m)
  )
  let line = `${time(date)} ${logLevel.label.padEnd(5)} ${parts.join(" ")}`
  const extras: Array<string> = []
  for (const [key, value] of HashMap.toEntries(annotations)) extras.push(`${key}=${render(value)}`)
  for (const span of List.toArray(spans)) extras.push(`${span.label}=${date.getTime() - span.startTime}ms`)
  if (extras.length > 0) line += `  ${extras.join(" ")}`
  if (!Cause.isEmpty(cause)) line += `\n${Cause.pretty(cause, { renderErrorCause: true })}`
  globalThis.console.log(line)
})

export const LoggingLive = Layer.unwrapEffect(
  LoggingConfig.pipe(
    Config.map(({ format, level }) =>
      Layer.merge(
        format === "json"
          ? Logger.json
          : format === "logfmt"
          ? Logger.logFmt
          : Logger.replace(Logger.defaultLogger, prettyLine),
        Logger.minimumLogLevel(level)
      )
    )
  )
)
