/**
 * The built `opsdesk` (dist/opsdesk.mjs, which test/globalSetup.ts builds
 * before the suite) as a child process: stdout and stderr are pipes, stdin is
 * closed, so nothing here is a terminal unless `script` gives it one.
 */
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../..", import.meta.url))

export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Nothing the machine's environment says about colour or the operator's broker, unless a test sets it. */
const baseEnv = (): NodeJS.ProcessEnv => {
  const { FORCE_COLOR: _f, NO_COLOR: _n, OPS_AMQP_URL: _o, TERM: _t, ...env } = process.env
  return env
}

const collect = (command: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<Run>((resume) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** `opsdesk <args>` with stdout and stderr piped. */
export const opsdesk = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  collect(process.execPath, ["dist/opsdesk.mjs", ...args], env)

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * `opsdesk <args>` with stdout and stderr on a pseudo-terminal (util-linux
 * `script`), as in an interactive shell; both arrive together on `stdout`.
 */
export const opsdeskOnTerminal = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  collect(
    "script",
    ["-qec", [process.execPath, "dist/opsdesk.mjs", ...args].map(shellQuote).join(" "), "/dev/null"],
    { TERM: "xterm-256color", ...env }
  )

export const ANSI = /\u001b\[[0-9;]*m/

/** A broker nobody listens on: every `opsdesk dlq` command fails to connect, fast. */
export const NO_BROKER = { AMQP_URL: "amqp://guest:secret@127.0.0.1:1/nowhere" }
