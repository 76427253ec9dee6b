/**
 * Spans that cost nothing when traces go nowhere. Otel.ts switches Effect's
 * tracer off in that case, but Effect 3 still builds a no-op span for every
 * `Effect.withSpan` and `Effect.fn` call (a stack capture, the span, a context
 * copy, a finalizer): work on every request for nobody. These check the
 * tracer's switch first and add the span only when it is on; with tracing on
 * they are `Effect.withSpan` and `Effect.fn`, without the source location
 * (captured here it would name Effect's internals, not the caller). README,
 * Benchmarks, has the measurements. Hand-written: Effect 3 has no such option.
 */
import { Effect, FiberRef, type Tracer } from "effect"

/** `Effect.withSpan(name, options)` when tracing is on; the effect itself when it is off. */
export const traced =
  (name: string, options?: Tracer.SpanOptions) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(
      FiberRef.get(FiberRef.currentTracerEnabled),
      (enabled) => enabled ? Effect.withSpan(self, name, { captureStackTrace: false, ...options }) : self
    )

/** `Effect.fn(name)`, with its span only when tracing is on (`traced`). */
export const tracedFn = (name: string): typeof Effect.fnUntraced => {
  const untraced = Effect.fnUntraced as (...args: ReadonlyArray<unknown>) => unknown
  const span = traced(name)
  return ((...args: ReadonlyArray<unknown>) => untraced(...args, span)) as unknown as typeof Effect.fnUntraced
}
