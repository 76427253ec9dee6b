/** The dashboard's history ring and its points: bounded, rates between samples, nothing invented across a restart. */
import { describe, expect, it } from "@effect/vitest"
import { capacityFor, type HistorySample, makeRing, toPoints } from "../../src/Ops/History.js"

const at = (s: number) => Date.UTC(2026, 0, 1, 12, 0, s)
const sample = (s: number, processed: number | null, lag?: [number, number]): HistorySample => ({
  at: at(s),
  counters: processed === null ? null : { processed, deadLettered: 0, retried: 0 },
  lag: lag === undefined ? null : { sum: lag[0], count: lag[1] },
  queues: { "tickets.dlq": s }
})

describe("ops history", () => {
  it("keeps an hour at most, whatever the interval", () => {
    expect(capacityFor(10_000)).toBe(361)
    expect(capacityFor(1)).toBe(3600)
    const ring = makeRing(3)
    for (let s = 0; s < 10; s++) ring.add(sample(s, s))
    expect(ring.size).toBe(3)
    expect(ring.snapshot(at(10)).map((x) => x.queues?.["tickets.dlq"])).toEqual([7, 8, 9])
    // Older than an hour: not shown.
    expect(ring.snapshot(at(9) + 3_600_001)).toEqual([])
  })

  it("gives rates and the lag between samples; null first, across a gap and when a counter went down", () => {
    const points = toPoints([
      sample(0, 100, [1, 10]),
      sample(10, 150, [3.5, 20]),
      sample(20, null),
      sample(30, 40, [0.1, 1]),
      sample(40, 60, [0.3, 3])
    ])
    expect(points.map((p) => p.processedPerSecond)).toEqual([null, 5, null, null, 2])
    expect(points.map((p) => p.avgLagMs === null)).toEqual([true, false, true, true, false])
    expect(points[1]!.avgLagMs).toBeCloseTo(250, 9)
    expect(points[4]!.avgLagMs).toBeCloseTo(100, 9)
    expect(points[0]!.at).toBe("2026-01-01T12:00:00.000Z")
  })
})
