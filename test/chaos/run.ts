/**
 * Runs `scripts/chaos.ts` with `args` as a child process, without blocking:
 * a `spawnSync` of several minutes froze the vitest worker's event loop, and
 * vitest then failed the run with "Timeout calling onTaskUpdate" although the
 * test passed.
 */
import { spawn } from "node:child_process"

export interface ChaosRun {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

export const runChaos = (args: ReadonlyArray<string>, timeoutMs: number): Promise<ChaosRun> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/chaos.ts", ...args], {
      env: { ...process.env, LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    // SIGINT lets the harness run its cleanup (it restarts whatever it stopped).
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs)
    child.once("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
