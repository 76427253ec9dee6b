/**
 * Child processes for the harnesses (scripts/chaos.ts, chaos-cluster.ts,
 * soak.ts): start a production bundle (`node dist/<name>.mjs`), follow its
 * output line by line, know when it is ready, and say what it printed last
 * when it exits or hangs instead. One place, so that a start-up failure reads
 * the same in every harness (issue 12: a failed start must print the
 * process's last output).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A free TCP port on loopback (free when asked; the process that gets it binds it soon after). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resolve(port))
    })
  })

/** The bundles the harnesses run, and the log message each prints once it is ready. */
export type Bundle = "api" | "worker" | "relay"
export const READY_MESSAGE: Record<Bundle, string> = {
  api: "API started",
  worker: "Worker consuming",
  relay: "Relay started"
}

/** A JSON log entry as `LOG_FORMAT=json` prints it (only the fields the harnesses read). */
export interface LogEntry {
  readonly message?: unknown
  readonly logLevel?: string
  readonly cause?: unknown
}

/**
 * The text of a JSON log entry: its message, or, when the message is empty
 * (an entry logged with only a Cause, as the runtime reports a failed
 * program), its cause's first line.
 */
export const entryText = (entry: LogEntry) => {
  const message = Array.isArray(entry.message) ? entry.message.map(String).join(" ") : String(entry.message ?? "")
  if (message.trim() !== "") return message
  return typeof entry.cause === "string" ? entry.cause.split("\n")[0] ?? "" : ""
}

/** Calls `onLine` with each whole line of `stream` (a chunk may end mid-line, or hold several). */
export const lines = (stream: NodeJS.ReadableStream, onLine: (line: string) => void) => {
  let buf = ""
  stream.on("data", (d: Buffer) => {
    buf += d.toString()
    let i: number
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
  stream.on("end", () => {
    if (buf.length > 0) onLine(buf)
    buf = ""
  })
}

export interface Proc {
  /** `<bundle>#<n>`: the n-th process this harness started. */
  readonly name: string
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
  /** Resolves once the process logged its ready message (worker consuming, relay publishing, API listening). */
  readonly ready: Promise<void>
  /** Its last lines of output (stdout and stderr, whole lines), for a report when it misbehaves. */
  readonly recent: () => string
}

export interface StartOptions {
  readonly env: Readonly<Record<string, string>>
  /** Only PATH, HOME and `env` (no inherited variables): what a clean deployment would see. */
  readonly cleanEnv?: boolean
  /**
   * Each line as it comes, with its JSON log entry (undefined when the line is
   * not JSON) and the stream it came on: the harness counts or echoes.
   */
  readonly onLine?: (proc: string, line: string, entry: LogEntry | undefined, stream: "stdout" | "stderr") => void
}

/** The processes started and not yet exited: what a harness must stop, whatever happened. */
export const running = new Set<ChildProcess>()
let serial = 0
const RECENT_LINES = 40

/** Starts `node dist/<bundle>.mjs` (the production bundle: no compile step at start-up). */
export const startProc = (bundle: Bundle, options: StartOptions): Proc => {
  const name = `${bundle}#${++serial}`
  const base = options.cleanEnv ? { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" } : process.env
  const child = spawn(process.execPath, [`dist/${bundle}.mjs`], {
    env: { ...base, ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  running.add(child)
  child.once("exit", () => running.delete(child))
  let markReady: () => void = () => undefined
  const ready = new Promise<void>((r) => (markReady = r))
  const recent: Array<string> = []
  const follow = (stream: "stdout" | "stderr") => (line: string) => {
    recent.push(line.slice(0, 2000))
    if (recent.length > RECENT_LINES) recent.shift()
    let entry: LogEntry | undefined
    try {
      const parsed: unknown = JSON.parse(line)
      entry = typeof parsed === "object" && parsed !== null ? parsed as LogEntry : undefined
    } catch {
      entry = undefined
    }
    if (entry !== undefined && entryText(entry).startsWith(READY_MESSAGE[bundle])) markReady()
    options.onLine?.(name, line, entry, stream)
  }
  lines(child.stdout!, follow("stdout"))
  lines(child.stderr!, follow("stderr"))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { name, child, exited, ready, recent: () => recent.join("\n").trim() }
}

/**
 * Waits until `proc` is ready (logged its ready message, or, when given,
 * `check` passes); fails with its exit code or the timeout, and its last
 * output, when it exits or hangs instead.
 */
export const awaitReady = async (proc: Proc, timeoutMs: number, check?: () => Promise<boolean>) => {
  const deadline = Date.now() + timeoutMs
  let exitCode: number | null | undefined
  void proc.exited.then((code) => (exitCode = code))
  let isReady = false
  void proc.ready.then(() => (isReady = true))
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(
        `${proc.name} exited with code ${exitCode} before it was ready; its last output:\n${proc.recent()}`
      )
    }
    if (check === undefined ? isReady : await check().catch(() => false)) return
    if (Date.now() > deadline) {
      throw new Error(`${proc.name} was not ready after ${timeoutMs / 1000}s; its last output:\n${proc.recent()}`)
    }
    await sleep(100)
  }
}

/** A check for `awaitReady`: `url` answers 200. */
export const answers200 = (url: string) => async () =>
  (await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200

/** SIGTERM to each of `procs` still running, SIGKILL to those not gone after `graceMs`. */
export const stopAll = async (procs: ReadonlyArray<Proc>, graceMs = 20_000) => {
  const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null
  for (const p of procs) if (alive(p)) p.child.kill("SIGTERM")
  await Promise.race([Promise.all(procs.map((p) => p.exited)), sleep(graceMs)])
  for (const p of procs) if (alive(p)) p.child.kill("SIGKILL")
}
