/**
 * A short run of `npm run chaos` (a few hundred writes, every fault kind once,
 * short outages), so CI keeps the fault-injection books honest. It stops and
 * restarts RabbitMQ, PostgreSQL and Redis on this machine; vitest runs test
 * files one at a time, so nothing else is using them meanwhile.
 */
import { describe, expect, it } from "@effect/vitest"
import { runChaos } from "./run.js"

describe("chaos (short run)", () => {
  it("loses nothing and doubles nothing under every fault kind", async () => {
    // dist/ is built by test/globalSetup.ts; the harness runs the bundles.
    const run = await runChaos(
      ["--no-build", "--writes", "300", "--rate", "30", "--outage-s", "3", "--drain-timeout-s", "120"],
      300_000
    )
    const report = `${run.stdout}\n${run.stderr}`
    expect(run.stdout, report).toContain("OpsDesk chaos run")
    expect(run.stdout, report).toMatch(/lost\s+0\n/)
    expect(run.stdout, report).toMatch(/effects doubled\s+0\n/)
    expect(run.stdout, report).toMatch(/^14 passed, 0 failed$/m)
    expect(run.status, report).toBe(0)
  }, 320_000)
})
