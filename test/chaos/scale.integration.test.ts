/**
 * A short run of `npm run chaos -- --scale`: 2 APIs (their relays off), 2
 * standalone relays and 3 workers on one database, a steady load spread over
 * both APIs, a relay and two workers killed or stopped and replaced on the way.
 * The books must balance (nothing lost, nothing doubled) and at least three
 * worker processes must have taken a share of the events. Unlike the fault
 * run it stops nothing shared (RabbitMQ, PostgreSQL and Redis stay up).
 * dist/ is built by test/globalSetup.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { runChaos } from "./run.js"

describe("chaos --scale (short run)", () => {
  it("2 APIs, 2 relays, 3 workers: loses nothing, doubles nothing, shares the work", async () => {
    const run = await runChaos(
      ["--scale", "--no-build", "--writes", "240", "--rate", "20", "--drain-timeout-s", "240"],
      840_000
    )
    const report = `${run.stdout}\n${run.stderr}`
    expect(run.stdout, report).toContain("OpsDesk chaos run (scale)")
    expect(run.stdout, report).toMatch(/lost\s+0\n/)
    expect(run.stdout, report).toMatch(/effects doubled\s+0\n/)
    expect(run.stdout, report).toMatch(/PASS {2}the work is shared/)
    expect(run.stdout, report).toMatch(/^12 passed, 0 failed$/m)
    expect(run.status, report).toBe(0)
  }, 900_000)
})
