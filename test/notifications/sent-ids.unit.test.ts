/**
 * The notification stream's memory of the ids it sent (Stream.ts `SentIds`):
 * bounded, and a resync that reads upwards from its floor sends each row at
 * most once, a late row included.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { SentIds } from "../../src/Notifications/Stream.js"

/** What a resync sends: rows above the floor, ascending, those not remembered; each is remembered as it goes. */
const resync = (sent: SentIds, table: ReadonlyArray<number>) => {
  const out: Array<number> = []
  // The floor as the resync starts: it reads every row above it, whatever the memory forgets meanwhile.
  const from = Number(sent.floor)
  for (const id of [...table].sort((a, b) => a - b)) {
    if (id <= from || sent.has(String(id))) continue
    out.push(id)
    sent.add(String(id))
  }
  return out
}

describe("SentIds", () => {
  it("a late row below everything remembered is sent once, and nothing remembered is sent again", () => {
    const sent = new SentIds("5", 8)
    for (let id = 10; id <= 90; id += 10) sent.add(String(id))
    // Nine sent, eight kept: 10 forgotten, so the floor is 10.
    expect(sent.floor).toBe("10")
    // Row 15 committed late (its NOTIFY lost); 100 is new.
    const table = [10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    expect(resync(sent, table)).toEqual([15, 100])
    expect(resync(sent, table)).toEqual([])
  })

  it("every id above the floor that was sent is remembered, whatever the order ids arrive in", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 64 }),
        (ids, capacity) => {
          const sent = new SentIds("0", capacity)
          const added: Array<number> = []
          for (const id of ids) {
            sent.add(String(id))
            added.push(id)
            const floor = Number(sent.floor)
            for (const a of added) if (a > floor) expect(sent.has(String(a))).toBe(true)
          }
          // Bounded: at most `capacity` remembered.
          expect(added.filter((a) => sent.has(String(a))).length).toBeLessThanOrEqual(capacity)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("a resync over any table sends each row not sent before exactly once", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 2_000 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 32 }),
        fc.integer({ min: 0, max: 100 }),
        (table, capacity, percentSentLive) => {
          const sent = new SentIds("0", capacity)
          // Some rows went out live, in the order their NOTIFYs came (any order).
          const live = table.filter((_, i) => (i * 37) % 100 < percentSentLive)
          for (const id of live) sent.add(String(id))
          const floor = Number(sent.floor)
          const again = resync(sent, table)
          // Nothing sent live above the floor goes out again, and every row above the floor went out.
          expect(again.filter((id) => live.includes(id))).toEqual([])
          const above = table.filter((id) => id > floor)
          expect(new Set([...again, ...live.filter((id) => id > floor)])).toEqual(new Set(above))
        }
      ),
      { numRuns: 200 }
    )
  })
})
