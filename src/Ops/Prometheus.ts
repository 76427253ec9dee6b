/**
 * Just enough of the Prometheus text exposition format (version 0.0.4) to
 * read the worker's counters and histograms: one sample per line,
 * `name{label="value",...} value [timestamp]`. Comments (`# HELP`, `# TYPE`,
 * `# UNIT`) and lines that do not parse are skipped.
 */

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/

const parseValue = (raw: string): number => {
  switch (raw) {
    case "+Inf":
      return Number.POSITIVE_INFINITY
    case "-Inf":
      return Number.NEGATIVE_INFINITY
    case "NaN":
      return Number.NaN
    default:
      return raw.trim() === "" ? Number.NaN : Number(raw)
  }
}

/** `{a="x",b="y\"z"}` from `at` (the `{`); returns the labels and the index after `}`, or null. */
const parseLabels = (line: string, at: number): { labels: Record<string, string>; end: number } | null => {
  const labels: Record<string, string> = {}
  let i = at + 1
  for (;;) {
    while (line[i] === " " || line[i] === ",") i++
    if (line[i] === "}") return { labels, end: i + 1 }
    const name = LABEL_NAME.exec(line.slice(i))?.[0]
    if (name === undefined) return null
    i += name.length
    while (line[i] === " ") i++
    if (line[i] !== "=") return null
    i++
    while (line[i] === " ") i++
    if (line[i] !== "\"") return null
    i++
    let value = ""
    for (;;) {
      const c = line[i]
      if (c === undefined) return null
      if (c === "\"") break
      if (c === "\\") {
        const next = line[i + 1]
        value += next === "n" ? "\n" : next ?? ""
        i += 2
        continue
      }
      value += c
      i++
    }
    labels[name] = value
    i++
  }
}

export const parseLine = (line: string): Sample | null => {
  const trimmed = line.trim()
  if (trimmed === "" || trimmed.startsWith("#")) return null
  const name = NAME.exec(trimmed)?.[0]
  if (name === undefined) return null
  let rest = trimmed.slice(name.length)
  let labels: Record<string, string> = {}
  if (rest.startsWith("{")) {
    const parsed = parseLabels(rest, 0)
    if (parsed === null) return null
    labels = parsed.labels
    rest = rest.slice(parsed.end)
  }
  const [raw] = rest.trim().split(/\s+/)
  if (raw === undefined) return null
  const value = parseValue(raw)
  return Number.isNaN(value) && raw !== "NaN" ? null : { name, labels, value }
}

export const parse = (text: string): ReadonlyArray<Sample> => {
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    const sample = parseLine(line)
    if (sample !== null) samples.push(sample)
  }
  return samples
}
