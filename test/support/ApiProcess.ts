/**
 * The production API (`node dist/api.mjs`, the bundle test/globalSetup.ts
 * builds) as a child process, and a RabbitMQ vhost of its own, for black-box
 * tests that must not depend on where things live in src/: this file imports
 * nothing from src/ (the broker's administration is test/support/BrokerAdmin.ts).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createServer, request } from "node:http"
import { promisify } from "node:util"
import * as BrokerAdmin from "./BrokerAdmin.js"

const exec = promisify(execFile)

export { AMQP_BASE } from "./BrokerAdmin.js"

export interface Vhost {
  readonly vhost: string
  /** AMQP_URL for that vhost. */
  readonly url: string
}

/** A fresh, empty vhost (an earlier one of that name is deleted first); `deleteVhost` removes it with everything in it. */
export const createVhost = async (name: string): Promise<Vhost> => {
  const vhost = `opsdesk_test_${name}_${process.pid}`
  await BrokerAdmin.deleteVhost(vhost)
  await BrokerAdmin.addVhost(vhost)
  return { vhost, url: BrokerAdmin.vhostUrl(vhost) }
}

export const deleteVhost = (vhost: string): Promise<void> => BrokerAdmin.deleteVhost(vhost)

/** A TCP port nobody listens on right now. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })

const statusOf = (port: number, path: string) =>
  new Promise<number>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, timeout: 2000 }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", () => resolve(0))
    req.end()
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export interface ApiProcess {
  readonly port: number
  readonly child: ChildProcess
  /** Everything the process wrote to stdout and stderr so far. */
  readonly output: () => string
  /** SIGTERM, then waits for the exit; the exit code (null if killed by a signal). */
  readonly stop: () => Promise<number | null>
}

/**
 * Starts `node dist/api.mjs` on `port` with exactly `env` (plus PATH/HOME),
 * and waits until `/health` answers 200 and then `/ready` answers 200 (the
 * publisher connected and the topology declared), at most `timeoutMs`.
 */
export const startApi = async (options: {
  readonly port: number
  readonly env: Readonly<Record<string, string>>
  readonly timeoutMs?: number
}): Promise<ApiProcess> => {
  if (!existsSync("dist/api.mjs")) {
    await exec(process.execPath, ["scripts/build.mjs"], { timeout: 120_000 })
  }
  const env: Record<string, string> = {}
  for (const key of ["PATH", "HOME", "TMPDIR", "REDIS_URL"]) {
    const value = process.env[key]
    if (value !== undefined) env[key] = value
  }
  Object.assign(env, options.env, { PORT: String(options.port) })
  const child = spawn(process.execPath, ["dist/api.mjs"], { env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout!.on("data", (d) => (output += d))
  child.stderr!.on("data", (d) => (output += d))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
    return exited
  }
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  for (const path of ["/health", "/ready"]) {
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`dist/api.mjs exited with ${child.exitCode} before ${path} answered:\n${output}`)
      }
      if ((await statusOf(options.port, path)) === 200) break
      if (Date.now() > deadline) {
        await stop()
        throw new Error(`dist/api.mjs: ${path} did not answer 200 in time:\n${output}`)
      }
      await sleep(100)
    }
  }
  return { port: options.port, child, output: () => output, stop }
}
