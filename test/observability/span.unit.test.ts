/**
 * `traced` and `tracedFn` add their span only while Effect's tracer is on
 * (Otel.ts switches it off when traces go nowhere); the effect's result,
 * failure and a function's arguments are the same either way.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { traced, tracedFn } from "../../src/Observability/Span.js"

/** The name of the span the effect runs in, if any. */
const spanName = Effect.map(Effect.option(Effect.currentSpan), Option.map((span) => span.name))

const offAndOn = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.all({ off: Effect.exit(Effect.withTracerEnabled(self, false)), on: Effect.exit(self) })

describe("traced", () => {
  it.effect("a span named as asked when tracing is on; no span at all when it is off", () =>
    Effect.gen(function*() {
      const { off, on } = yield* offAndOn(spanName.pipe(traced("Outer.op")))
      expect(on).toEqual(Exit.succeed(Option.some("Outer.op")))
      // Effect.withSpan would still give the effect a (no-op) span named so.
      expect(off).toEqual(Exit.succeed(Option.none()))
    }))

  it.effect("nested spans keep their parent when tracing is on", () =>
    Effect.gen(function*() {
      const parent = yield* Effect.currentSpan.pipe(
        traced("Inner"),
        Effect.map((span) => Option.map(span.parent, (p) => p._tag === "Span" ? p.name : p._tag)),
        traced("Outer")
      )
      expect(parent).toEqual(Option.some("Outer"))
    }))

  it.effect("the same success and failure either way", () =>
    Effect.gen(function*() {
      const ok = yield* offAndOn(Effect.succeed(42).pipe(traced("Ok")))
      expect(ok.off).toEqual(Exit.succeed(42))
      expect(ok.on).toEqual(Exit.succeed(42))
      const failed = yield* offAndOn(Effect.fail("nope").pipe(traced("Failed")))
      expect(failed.off).toEqual(Exit.fail("nope"))
      expect(failed.on).toEqual(Exit.fail("nope"))
    }))
})

describe("tracedFn", () => {
  const add = tracedFn("Maths.add")(function*(a: number, b: number) {
    const name = yield* spanName
    if (a < 0) return yield* Effect.fail(`negative: ${a}`)
    return { sum: a + b, span: name }
  })

  it.effect("the arguments reach the body; its span only when tracing is on", () =>
    Effect.gen(function*() {
      const { off, on } = yield* offAndOn(add(2, 3))
      expect(on).toEqual(Exit.succeed({ sum: 5, span: Option.some("Maths.add") }))
      expect(off).toEqual(Exit.succeed({ sum: 5, span: Option.none() }))
      const failed = yield* offAndOn(add(-1, 3))
      expect(failed.on).toEqual(Exit.fail("negative: -1"))
      expect(failed.off).toEqual(Exit.fail("negative: -1"))
    }))
})
