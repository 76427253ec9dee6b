/**
 * `npm run start:api` and `npm run start:worker` each build dist/ first
 * (scripts/build.mjs): two builds at once, with a process reading dist/
 * meanwhile, must only ever see whole files, and leave a dist/ that runs.
 * (The build used to delete dist/ first and let esbuild write in place: the
 * other process found no file, or half of one.)
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import { closeSync, fstatSync, openSync, readdirSync, readSync } from "node:fs"
import * as Path from "node:path"
import { promisify } from "node:util"

const exec = promisify(execFile)
const ROOT = new URL("../..", import.meta.url).pathname
const DIST = Path.join(ROOT, "dist")

const build = () =>
  new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, ["scripts/build.mjs"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] })
    child.once("error", reject)
    child.once("exit", (code) => resolve(code ?? 1))
  })

/** Problems of dist/'s bundles as a reader sees them right now: a missing or unfinished file. */
const problems = (names: ReadonlyArray<string>): Array<string> =>
  names.flatMap((name) => {
    // esbuild ends each bundle with its source map's line: a file without it at its end is cut short.
    const trailer = Buffer.from(`//# sourceMappingURL=${name}.map\n`)
    let fd: number | undefined
    try {
      fd = openSync(Path.join(DIST, name), "r")
      const size = fstatSync(fd).size
      const tail = Buffer.alloc(trailer.length)
      readSync(fd, tail, 0, trailer.length, Math.max(0, size - trailer.length))
      return tail.equals(trailer) ? [] : [`${name}: incomplete (${size} bytes)`]
    } catch (e) {
      return [`${name}: ${(e as Error).message}`]
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
  })

describe("npm run build", () => {
  it("two builds at once: a reader only ever sees whole files, and the result runs", async () => {
    // test/globalSetup.ts built dist/ already.
    const bundles = readdirSync(DIST).filter((name) => name.endsWith(".mjs"))
    expect(bundles).toEqual(
      expect.arrayContaining(["api.mjs", "worker.mjs", "migrate.mjs", "start.mjs", "opsdesk.mjs"])
    )
    expect(problems(bundles)).toEqual([])

    let running = true
    const seen: Array<string> = []
    let samples = 0
    const reader = (async () => {
      while (running) {
        for (const problem of problems(bundles)) seen.push(problem)
        samples++
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    const codes = await Promise.all([build(), build()]).finally(() => (running = false))
    await reader

    expect(codes).toEqual([0, 0])
    expect(samples).toBeGreaterThan(0)
    expect([...new Set(seen)]).toEqual([])
    // No temporary file left behind; every bundle parses.
    expect(readdirSync(DIST).filter((name) => name.endsWith(".tmp"))).toEqual([])
    for (const name of bundles) {
      await exec(process.execPath, ["--check", Path.join(DIST, name)], { timeout: 300_000 })
    }
  }, 900_000) // Two full builds at once on a shared 2-core machine: minutes when it is busy.
})
