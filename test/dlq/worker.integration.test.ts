/**
 * DLQ replay with the real worker running in-process, against the real
 * PostgreSQL, Redis and RabbitMQ (a vhost of its own): what the worker
 * dead-letters is listed with its reason, a replay starts its retries afresh,
 * and replaying an event that was already processed changes nothing (the
 * worker's idempotency suppresses it).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { ConfirmChannel } from "amqplib"
import { Context, Effect, Layer, ManagedRuntime, Ref } from "effect"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import { Dlq } from "../../src/Dlq/Dlq.js"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { Faults, HandlerError } from "../../src/Worker/Faults.js"
import { WorkerMetrics, WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { withEntities } from "../support/Entities.js"
import {
  configFrom,
  countRows,
  deleteEventRows,
  InfraLive,
  ticketCreated,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"
import { deadLetter, depth } from "./support.js"

/** Event ids whose handler fails on every attempt. */
const failing = Effect.runSync(Ref.make(new Set<string>()))
const FaultsTest = Layer.succeed(
  Faults,
  Faults.of({
    check: (event) =>
      Effect.flatMap(
        Ref.get(failing),
        (
          ids
        ) => (ids.has(event.eventId) ? Effect.fail(new HandlerError({ message: "Simulated failure" })) : Effect.void)
      )
  })
)

const config = (url: string) =>
  configFrom({
    AMQP_URL: url,
    MAX_RETRIES: 2,
    RETRY_INITIAL_DELAY_MS: 100,
    RETRY_MAX_DELAY_MS: 1000,
    IMMEDIATE_RETRIES: 1,
    IMMEDIATE_RETRY_DELAY_MS: 5,
    METRICS_INTERVAL_MS: 60_000,
    AMQP_RECONNECT_INITIAL_MS: 100,
    AMQP_RECONNECT_MAX_MS: 500
  })

class TestBroker extends Context.Tag("test/dlq/worker/TestBroker")<
  TestBroker,
  { readonly url: string; readonly channel: ConfirmChannel }
>() {}

const TestBrokerLive = Layer.scoped(
  TestBroker,
  Effect.gen(function*() {
    const { url } = yield* withVhost("dlqworker")
    const { channel } = yield* withAmqp(url)
    yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100, 200] })
    return { url, channel }
  })
)

/** The worker as src/Worker/Main.ts composes it, with controllable faults. */
const WorkerTest = Layer.scopedContext(
  Effect.flatMap(TestBroker, ({ url }) =>
    Layer.build(
      WorkerLive.pipe(
        Layer.provideMerge(
          Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsTest, WorkerMetricsLive, FatalLive)
        )
      )
    ).pipe(Effect.withConfigProvider(config(url))))
)

const DlqTest = Layer.scopedContext(
  Effect.flatMap(TestBroker, ({ url }) => Layer.build(Dlq.Default).pipe(Effect.withConfigProvider(config(url))))
)

const runtime = ManagedRuntime.make(
  Layer.mergeAll(WorkerTest, DlqTest).pipe(Layer.provideMerge(TestBrokerLive), Layer.provideMerge(InfraLive))
)
afterAll(() => runtime.dispose(), 30_000)

const publish = (channel: ConfirmChannel, event: DomainEvent | { readonly event: string; readonly body: string }) =>
  Effect.promise(async () => {
    const body = "body" in event ? event.body : JSON.stringify(event)
    channel.publish(EXCHANGE, event.event, Buffer.from(body), {
      persistent: true,
      contentType: "application/json",
      messageId: "eventId" in event ? event.eventId : undefined
    })
    await channel.waitForConfirms()
  })

describe("DLQ replay with the worker running", () => {
  it.live("replaying an event that was already processed is suppressed by idempotency", () => {
    const event = ticketCreated()
    return Effect.gen(function*() {
      const { channel } = yield* TestBroker
      const dlq = yield* Dlq
      const metrics = yield* WorkerMetrics
      yield* withEntities([event])

      yield* publish(channel, event)
      yield* waitUntil(
        "the event to be processed",
        Effect.map(countRows("processed_events", [event.eventId]), (n) => n === 1)
      )
      expect(yield* countRows("notifications", [event.eventId])).toBe(1)

      // A stale copy in the DLQ (say its ack was lost after a failure was recorded), replayed by an operator.
      yield* deadLetter(channel, event, { attempts: 3 })
      const before = yield* metrics.totals
      expect(yield* dlq.replay({ eventId: event.eventId })).toMatchObject({ matched: 1, replayed: 1, skipped: 0 })

      yield* waitUntil(
        "the replay to be counted as a duplicate",
        Effect.map(metrics.totals, (t) => t.duplicates > before.duplicates)
      )
      const after = yield* metrics.totals
      expect(after.duplicates - before.duplicates).toBe(1)
      expect(after.processed).toBe(before.processed)
      expect(yield* countRows("processed_events", [event.eventId])).toBe(1)
      expect(yield* countRows("notifications", [event.eventId])).toBe(1)
      expect(yield* dlq.depth).toBe(0)
    }).pipe(Effect.scoped, Effect.ensuring(deleteEventRows([event.eventId])), Effect.provide(runtime))
  }, 60_000)

  it.live(
    "what the worker dead-lettered is listed with its reason; a replay retries it afresh, and once fixed processes it once",
    () => {
      const doomed = ticketCreated()
      return Effect.gen(function*() {
        const { channel } = yield* TestBroker
        const dlq = yield* Dlq
        const metrics = yield* WorkerMetrics
        const start = yield* metrics.totals
        yield* withEntities([doomed])

        // The worker dead-letters a failing event (after MAX_RETRIES=2 retries) and a poison message.
        yield* Ref.update(failing, (s) => new Set([...s, doomed.eventId]))
        yield* publish(channel, doomed)
        yield* publish(channel, { event: "message.sent", body: "{not json" })
        yield* waitUntil(
          "both to reach the DLQ",
          Effect.map(metrics.totals, (t) => t.failed > start.failed && t.poison > start.poison)
        )
        const listed = yield* dlq.list()
        expect(listed).toHaveLength(2)
        const failedEntry = listed.find((e) => e.kind === "failed")
        const poisonEntry = listed.find((e) => e.kind === "poison")
        expect(failedEntry).toMatchObject({
          event: "ticket.created",
          eventId: doomed.eventId,
          originalRoutingKey: "ticket.created",
          originalQueue: "ticket.created.queue",
          attempts: 3,
          error: "Simulated failure",
          replayable: true
        })
        expect(poisonEntry).toMatchObject({
          event: "message.sent",
          originalQueue: "message.sent.queue",
          replayable: false
        })
        expect(poisonEntry!.error).toContain("not valid JSON")
        expect(yield* dlq.depth).toBe(2)

        // Replayed while still failing: its retry count starts again, so the worker retries it twice more before dead-lettering it.
        const beforeReplay = yield* metrics.totals
        expect(yield* dlq.replay({ eventId: doomed.eventId })).toMatchObject({ replayed: 1 })
        yield* waitUntil(
          "the replayed event to fail again",
          Effect.map(metrics.totals, (t) => t.failed > beforeReplay.failed)
        )
        expect((yield* metrics.totals).retried - beforeReplay.retried).toBe(2)
        expect((yield* dlq.list()).filter((e) => e.eventId === doomed.eventId)).toHaveLength(1)

        // Fixed: replay everything. The event is processed exactly once; the poison message is skipped and stays.
        yield* Ref.update(failing, (s) => new Set([...s].filter((id) => id !== doomed.eventId)))
        const result = yield* dlq.replay({ all: true })
        expect(result).toMatchObject({ matched: 2, replayed: 1, skipped: 1 })
        expect(result.skippedMessages[0]!.reason).toContain("poison")
        yield* waitUntil(
          "the fixed event to be processed",
          Effect.map(countRows("processed_events", [doomed.eventId]), (n) => n === 1)
        )
        expect(yield* countRows("notifications", [doomed.eventId])).toBe(1)
        const [left, ...rest] = yield* dlq.list()
        expect(rest).toHaveLength(0)
        expect(left!.kind).toBe("poison")
        expect(yield* depth(channel, DLQ)).toBe(1)
      }).pipe(Effect.scoped, Effect.ensuring(deleteEventRows([doomed.eventId])), Effect.provide(runtime))
    },
    60_000
  )
})
