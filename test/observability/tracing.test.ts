/**
 * One trace from the HTTP request to the notification: the API (in-process
 * test server), the outbox relay and the real worker (its own vhost) run
 * together with an in-memory span exporter, so tracing is on. A ticket is
 * created with an incoming `traceparent`; once the worker has processed its
 * event, the request's span, the outbox write, the relay's publish and the
 * worker's handling must share the caller's trace, and the worker's span must
 * lead back, parent by parent, to the request's span.
 *
 * With tracing off (the default: no exporter configured), nothing records
 * spans, no trace context is written to the outbox, and everything still
 * works end to end.
 */
import { HttpClient } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Exit, Layer, Scope, type Tracer } from "effect"
import { MigrateOnStart } from "../../src/App/ApiProcess.js"
import { HttpLive } from "../../src/App/Server.js"
import { Tokens } from "../../src/Auth/Tokens.js"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { FatalLive } from "../../src/Fatal.js"
import * as Otel from "../../src/Observability/Otel.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive } from "../../src/Store/Sql.js"
import { Ticket } from "../../src/Tickets/Domain.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { FaultsLive } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { call, decode, get } from "../api/support/Client.js"
import { makeFixtures } from "../api/support/Fixtures.js"
import { configFrom, countRows, deleteEventRows, waitUntil, withVhost } from "../support/Env.js"

/** API (test server) + relay + worker, on one database, one broker vhost and one OpenTelemetry layer. */
const system = <E>(observability: Layer.Layer<Otel.PrometheusMetrics | Otel.Tracing, E>) =>
  Layer.mergeAll(
    HttpLive.pipe(Layer.provideMerge(NodeHttpServer.layerTest)),
    RelayLive,
    WorkerLive.pipe(Layer.provide([EventStoreLive, FaultsLive, WorkerMetricsLive]))
  ).pipe(
    Layer.provide(MigrateOnStart),
    Layer.provideMerge(Layer.mergeAll(TicketListCacheLive(), PublisherLive, Tokens.Default)),
    Layer.provideMerge(FatalLive),
    // Outermost, so that its tracer (or its switching tracing off) reaches every layer above.
    Layer.provideMerge(observability),
    Layer.provideMerge(Layer.merge(PgLive, RedisLive))
  )

const workerSettings = (url: string) => ({
  AMQP_URL: url,
  IMMEDIATE_RETRY_DELAY_MS: 5,
  METRICS_INTERVAL_MS: 60_000,
  OUTBOX_POLL_INTERVAL_MS: 200
})

/** Runs `test` against the whole system, built on a fresh vhost and torn down afterwards. */
const withSystem = <A, E, R, EO>(
  name: string,
  observability: Layer.Layer<Otel.PrometheusMetrics | Otel.Tracing, EO>,
  test: Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const { url } = yield* withVhost(name)
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(system(observability), scope).pipe(
      Effect.withConfigProvider(configFrom(workerSettings(url)))
    )
    return yield* test.pipe(Effect.provide(context), Effect.ensuring(Scope.close(scope, Exit.void)))
  }).pipe(Effect.scoped)

/** The outbox row of a ticket's `ticket.created` event. */
const outboxRowOf = (ticketId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ readonly eventId: string; readonly headers: Record<string, string> | null }>`
      SELECT event_id::text, headers FROM outbox
      WHERE event_type = 'ticket.created' AND envelope->'payload'->>'id' = ${ticketId}`
  ).pipe(
    Effect.map((rows) => rows[0]!),
    Effect.orDie
  )

const processed = (eventId: string) =>
  waitUntil(`the worker to process ${eventId}`, Effect.map(countRows("processed_events", [eventId]), (n) => n === 1))

/** The test's client sends the caller's `traceparent` as given: no span of its own, no propagation. */
const asExternalCaller = <A, E, R>(request: Effect.Effect<A, E, R>) =>
  request.pipe(
    Effect.locally(HttpClient.currentTracerPropagation, false),
    Effect.locally(HttpClient.currentTracerDisabledWhen, () => true)
  )

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER_SPAN_ID = "00f067aa0ba902b7"

describe("tracing", () => {
  it.live(
    "on: one trace runs from the HTTP request through the outbox and the relay to the worker",
    () =>
      Effect.gen(function*() {
        const exporter = new InMemorySpanExporter()
        const observability = Otel.layer({
          serviceName: "opsdesk-tracing-test",
          extraSpanProcessors: [new SimpleSpanProcessor(exporter)]
        })
        yield* withSystem(
          "tracing_on",
          observability,
          Effect.gen(function*() {
            expect((yield* Otel.Tracing).enabled).toBe(true)
            const fx = yield* makeFixtures
            const agent = yield* fx.user("agent")
            const reply = yield* asExternalCaller(call("POST", "/v1/tickets", {
              token: agent.token,
              json: { title: "Traced ticket", description: "from the tracing test" },
              headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01` }
            }))
            expect(reply.status, reply.text).toBe(201)
            const ticket = decode(Ticket, reply)
            const row = yield* outboxRowOf(ticket.id)
            yield* Effect.addFinalizer(() => deleteEventRows([row.eventId]))
            yield* processed(row.eventId)

            // The worker's span ends just after its batch commits.
            const spans = yield* waitUntil(
              "the worker's span",
              Effect.sync(() =>
                exporter.getFinishedSpans().some((s) =>
                  s.name === "Worker.handle ticket.created" && s.attributes["messaging.message.id"] === row.eventId
                )
              )
            ).pipe(Effect.as(exporter.getFinishedSpans()))
            const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]))
            const find = (what: string, p: (s: ReadableSpan) => boolean) => {
              const span = spans.find(p)
              expect(span, what).toBeDefined()
              return span!
            }
            const request = find("the HTTP server span", (s) =>
              s.name.startsWith("http.server") && s.attributes["http.request.method"] === "POST" &&
              s.attributes["url.path"] === "/v1/tickets")
            const write = find(
              "the outbox write span",
              (s) =>
                s.name === "TicketsRepo.insertWithEvent" && s.attributes["eventId"] === row.eventId
            )
            const publish = find(
              "the relay's publish span",
              (s) =>
                s.name === "Outbox.publish" && s.attributes["messaging.message.id"] === row.eventId
            )
            const handle = find(
              "the worker's span",
              (s) => s.name === "Worker.handle ticket.created" && s.attributes["messaging.message.id"] === row.eventId
            )

            // The caller's trace, continued: the request's span is a child of the incoming traceparent.
            for (const span of [request, write, publish, handle]) expect(span.spanContext().traceId).toBe(TRACE_ID)
            expect(request.parentSpanContext?.spanId).toBe(CALLER_SPAN_ID)
            expect(request.attributes["http.response.status_code"]).toBe(201)
            // The outbox row carries the write's span; the relay's publish is its child, the worker's span the publish's.
            expect(row.headers?.["traceparent"]).toBe(`00-${TRACE_ID}-${write.spanContext().spanId}-01`)
            expect(publish.parentSpanContext?.spanId).toBe(write.spanContext().spanId)
            expect(handle.parentSpanContext?.spanId).toBe(publish.spanContext().spanId)

            // From the worker's span up to the request's span, one parent at a time.
            const chain: Array<string> = []
            let current: ReadableSpan | undefined = handle
            while (current !== undefined && current !== request) {
              chain.push(current.name)
              const parentId: string | undefined = current.parentSpanContext?.spanId
              current = parentId === undefined ? undefined : byId.get(parentId)
            }
            expect(current, `parent chain: ${chain.join(" < ")}`).toBe(request)
            expect(chain).toEqual([
              "Worker.handle ticket.created",
              "Outbox.publish",
              "TicketsRepo.insertWithEvent",
              "Tickets.create"
            ])
          }).pipe(Effect.scoped)
        )
      }),
    { timeout: 60_000 }
  )

  it.live(
    "off (the default): nothing is recorded or propagated, and requests and events still flow",
    () =>
      Effect.gen(function*() {
        yield* withSystem(
          "tracing_off",
          Otel.layer({ serviceName: "opsdesk-tracing-test" }),
          Effect.gen(function*() {
            expect((yield* Otel.Tracing).enabled).toBe(false)
            // Spans are no-ops: no ids, so no trace context anywhere.
            const span = yield* Effect.withSpan(Effect.currentSpan, "probe")
            expect((span as Tracer.Span).traceId).toBe("noop")

            const fx = yield* makeFixtures
            const agent = yield* fx.user("agent")
            const reply = yield* call("POST", "/v1/tickets", {
              token: agent.token,
              json: { title: "Untraced ticket", description: "from the tracing test" },
              headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01` }
            })
            expect(reply.status, reply.text).toBe(201)
            const ticket = decode(Ticket, reply)
            expect((yield* get("/v1/tickets?limit=5", agent.token)).status).toBe(200)
            const row = yield* outboxRowOf(ticket.id)
            yield* Effect.addFinalizer(() => deleteEventRows([row.eventId]))
            expect(row.headers ?? {}).not.toHaveProperty("traceparent")
            yield* processed(row.eventId)
          }).pipe(Effect.scoped)
        )
      }),
    { timeout: 60_000 }
  )
})
