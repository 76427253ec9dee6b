/**
 * Small text helpers for the `opsdesk` command line: durations as typed on it
 * (`90s`, `30m`, `1h`, `7d`), ages as shown, and plain-text tables.
 */
import { Duration, Either } from "effect"

const UNITS: Record<string, (n: number) => Duration.Duration> = {
  ms: Duration.millis,
  s: Duration.seconds,
  m: Duration.minutes,
  h: Duration.hours,
  d: Duration.days,
  w: Duration.weeks
}

/** `30m`, `1h`, `7d`, `1h30m`, `90s`, `500ms`, `2w`; whole numbers, at least one unit, total > 0. */
export const parseDuration = (input: string): Either.Either<Duration.Duration, string> => {
  const s = input.trim().toLowerCase()
  const invalid = Either.left(
    `Invalid duration ${JSON.stringify(input)}: use a number and a unit, e.g. 90s, 30m, 1h, 7d or 1h30m`
  )
  if (!/^(\d+(ms|s|m|h|d|w))+$/.test(s)) return invalid
  let total = Duration.zero
  for (const [, n, unit] of s.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) total = Duration.sum(total, UNITS[unit!]!(Number(n)))
  return Duration.greaterThan(total, Duration.zero)
    ? Either.right(total)
    : Either.left(`Invalid duration ${JSON.stringify(input)}: must be more than zero`)
}

/** `42s`, `17m`, `5h`, `3d`: the largest unit, rounded down. */
export const formatAge = (seconds: number | null): string => {
  if (seconds === null) return "?"
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`
  return `${Math.floor(seconds / 86_400)}d`
}

/** `1h30m`-style, as typed on the command line. */
export const formatDuration = (d: Duration.Duration): string => {
  let ms = Math.round(Duration.toMillis(d))
  const parts: Array<string> = []
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size) {
      parts.push(`${Math.floor(ms / size)}${unit}`)
      ms %= size
    }
  }
  if (ms > 0 || parts.length === 0) parts.push(`${ms}ms`)
  return parts.join("")
}

export const truncate = (s: string, width: number) => (s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`)

export interface Column {
  readonly header: string
  /** Cells longer than this are cut with an ellipsis. */
  readonly maxWidth?: number
  readonly align?: "left" | "right"
}

/** A plain table: a header row, then one line per row, columns separated by two spaces. */
export const renderTable = (columns: ReadonlyArray<Column>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const cells = rows.map((row) =>
    columns.map((c, i) => truncate((row[i] ?? "").replace(/\s+/g, " "), c.maxWidth ?? Number.MAX_SAFE_INTEGER))
  )
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)))
  const line = (values: ReadonlyArray<string>) =>
    values.map((v, i) => (columns[i]!.align === "right" ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join("  ")
      .trimEnd()
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join("\n")
}
