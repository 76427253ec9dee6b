import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { clip } from "../../src/Kit/Text.js"

describe("clip", () => {
  it("keeps short well-formed text as it is", () => {
    expect(clip("plain 🙂 text", 100)).toBe("plain 🙂 text")
  })

  it("never splits a surrogate pair at the cut", () => {
    expect(clip("ab🙂", 3)).toBe("ab")
    expect(clip("ab🙂c", 4)).toBe("ab🙂")
  })

  it("replaces a lone surrogate (as V8's JSON error names an emoji token)", () => {
    const message = (() => {
      try {
        JSON.parse("🙂 not JSON")
      } catch (e) {
        return (e as Error).message
      }
      return ""
    })()
    expect(message.isWellFormed()).toBe(false)
    const clipped = clip(message, 1000)
    expect(clipped.isWellFormed()).toBe(true)
    // What a UTF-8 wire (an AMQP header) gives back is what was written.
    expect(Buffer.from(clipped, "utf8").toString("utf8")).toBe(clipped)
  })

  it("is a well-formed prefix of the text's well-formed form, at most max units long", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), fc.nat({ max: 45 }), (text, max) => {
        const out = clip(text, max)
        expect(out.length).toBeLessThanOrEqual(max)
        expect(out.isWellFormed()).toBe(true)
        expect(text.toWellFormed().startsWith(out)).toBe(true)
        // At most one unit (the half of a pair) is given up to the cut.
        expect(out.length).toBeGreaterThanOrEqual(Math.min(max, text.length) - 1)
      })
    )
  })
})
