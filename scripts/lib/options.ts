/** Command-line options of the harnesses: `--name value` and `--flag`. */

export interface Options {
  /** `--name <number>`, else `fallback`; must be >= 0 (> 0 with `positive`). */
  readonly number: (name: string, fallback: number, positive?: boolean) => number
  readonly string: (name: string, fallback: string) => string
  readonly flag: (name: string) => boolean
}

export const options = (argv: ReadonlyArray<string> = process.argv.slice(2)): Options => {
  const value = (name: string) => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 ? argv[i + 1] : undefined
  }
  return {
    number: (name, fallback, positive = false) => {
      const raw = value(name)
      const v = raw === undefined ? fallback : Number(raw)
      if (!Number.isFinite(v) || v < 0 || (positive && v === 0)) {
        throw new Error(`--${name} must be a ${positive ? "positive " : ""}number`)
      }
      return v
    },
    string: (name, fallback) => value(name) ?? fallback,
    flag: (name) => argv.includes(`--${name}`)
  }
}
