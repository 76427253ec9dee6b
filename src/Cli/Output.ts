/**
 * How `opsdesk` writes: with or without colour, as text or as JSON.
 *
 * Colour: @effect/cli 0.77 renders every help page and usage error with
 * @effect/printer-ansi's "pretty" style and has no switch to turn it off (its
 * successor in Effect 4 reads NO_COLOR itself). So the CLI runs under a
 * `Console` that removes the SGR escapes when colour is off: `NO_COLOR` set to
 * anything non-empty (no-color.org), `TERM=dumb`, or stdout not a terminal.
 *
 * JSON: with `--json` anywhere on the line (before `--`), results go to
 * stdout as JSON and an error is one JSON object on stderr,
 * `{"error": {"tag", "message", "exitCode", ...}}`, usage errors included;
 * the library's own text rendering of a usage error is held back.
 */
import { ConfigProvider, type Console, Effect } from "effect"
import { ColorConfig } from "../Config.js"

/** Exit codes, as `opsdesk --help` and docs/OPS.md state them. */
export const ExitCode = { ok: 0, failure: 1, usage: 2 } as const

export interface OutputMode {
  readonly color: boolean
  readonly json: boolean
}

export const colorEnabled = (
  env: { readonly NO_COLOR?: string; readonly TERM?: string },
  stdoutIsTty: boolean
): boolean => (env.NO_COLOR ?? "") === "" && env.TERM !== "dumb" && stdoutIsTty

/** `--json` given as a flag (not as the value after `--`). */
export const jsonRequested = (args: ReadonlyArray<string>): boolean => {
  const end = args.indexOf("--")
  return (end === -1 ? args : args.slice(0, end)).includes("--json")
}

/** The mode the environment and `args` ask for. */
export const outputMode = (args: ReadonlyArray<string>): Effect.Effect<OutputMode> =>
  ColorConfig.pipe(
    Effect.map((env) => ({ color: colorEnabled(env, process.stdout.isTTY === true), json: jsonRequested(args) })),
    Effect.withConfigProvider(ConfigProvider.fromEnv()),
    Effect.orElseSucceed(() => ({ color: false, json: jsonRequested(args) }))
  )

const SGR = /\u001b\[[0-9;]*m/g

export const stripAnsi = (s: string): string => s.replace(SGR, "")

const plainArgs = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? stripAnsi(a) : a))

/**
 * The Console the commands (and @effect/cli) write through: escapes removed
 * without colour; in JSON mode stderr carries only `writeJsonError`'s object.
 */
export const makeConsole = (base: Console.Console, mode: OutputMode): Console.Console => {
  const text = (write: (...args: ReadonlyArray<unknown>) => Effect.Effect<void>) => (...args: ReadonlyArray<unknown>) =>
    write(...(mode.color ? args : plainArgs(args)))
  const toStderr = (write: (...args: ReadonlyArray<unknown>) => Effect.Effect<void>) =>
    mode.json ? () => Effect.void : text(write)
  const unsafeText = (write: (...args: ReadonlyArray<unknown>) => void) => (...args: ReadonlyArray<unknown>) =>
    write(...(mode.color ? args : plainArgs(args)))
  return {
    ...base,
    log: text(base.log),
    info: text(base.info),
    error: toStderr(base.error),
    warn: toStderr(base.warn),
    unsafe: { ...base.unsafe, log: unsafeText(base.unsafe.log), error: unsafeText(base.unsafe.error) }
  }
}

export interface ErrorReport {
  readonly tag: string
  readonly message: string
  readonly exitCode: number
  readonly [key: string]: unknown
}

/** The one line a failure prints on stderr: `Error: …`, or the JSON object in JSON mode. */
export const writeError = (base: Console.Console, mode: OutputMode, report: ErrorReport, printed = false) =>
  mode.json
    ? base.error(JSON.stringify({ error: report }))
    : printed
    ? Effect.void
    : base.error(`Error: ${report.message}`)
