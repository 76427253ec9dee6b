/**
 * W3C trace context across the outbox and the broker: the span of the request
 * that wrote an event is saved in the outbox row, the relay publishes with its
 * own span as `traceparent`, and the worker's span takes that as its parent,
 * so one trace runs from the HTTP request to the notification.
 */
import { Headers, HttpTraceContext } from "@effect/platform"
import { Effect, Option, type Tracer } from "effect"

const TRACE_ID = /^[0-9a-f]{32}$/
const SPAN_ID = /^[0-9a-f]{16}$/

/**
 * `{ traceparent }` naming the span; nothing for a span without real ids
 * (with tracing off, Effect's spans are no-ops whose ids read "noop").
 */
export const traceHeadersOf = (span: Tracer.Span): Record<string, string> => {
  if (!TRACE_ID.test(span.traceId) || !SPAN_ID.test(span.spanId)) return {}
  const traceparent = HttpTraceContext.toHeaders(span)["traceparent"]
  return traceparent === undefined ? {} : { traceparent }
}

/** `{ traceparent }` of the current span, or nothing outside a (recorded) span. */
export const currentTraceHeaders: Effect.Effect<Record<string, string>> = Effect.map(
  Effect.option(Effect.currentSpan),
  Option.match({ onNone: () => ({}), onSome: traceHeadersOf })
)

/** The parent span named by a `traceparent` header (AMQP headers or an outbox row), if valid. */
export const parentFromHeaders = (
  headers: Readonly<Record<string, unknown>> | null | undefined
): Option.Option<Tracer.ExternalSpan> => {
  const traceparent = headers?.["traceparent"]
  if (typeof traceparent !== "string") return Option.none()
  return HttpTraceContext.w3c(Headers.fromInput({ traceparent }))
}
