/**
 * The worker against the real PostgreSQL, Redis and RabbitMQ (its own vhost).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import type { ConfirmChannel, GetMessage } from "amqplib"
import { Context, Effect, Exit, Layer, Ref, Scope } from "effect"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { Faults, HandlerError } from "../../src/Worker/Faults.js"
import { WorkerMetrics, WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { withEntities } from "../support/Entities.js"
import {
  closeAllConnections,
  configFrom,
  countRows,
  deleteEventRows,
  InfraLive,
  messageSent,
  ticketCreated,
  unpublished,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

/** Fails every attempt of the event ids in the set. */
const failing = Effect.runSync(Ref.make(new Set<string>()))
const FaultsTest = Layer.succeed(
  Faults,
  Faults.of({
    check: (event) =>
      Effect.flatMap(
        Ref.get(failing),
        (ids) => ids.has(event.eventId) ? Effect.fail(new HandlerError({ message: "Simulated failure" })) : Effect.void
      )
  })
)

const workerConfig = (url: string) => ({
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

/** Starts the worker in the given scope; returns its metrics. */
const startWorker = (url: string, scope: Scope.Scope) =>
  Layer.buildWithScope(
    WorkerLive.pipe(
      Layer.provideMerge(
        Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsTest, WorkerMetricsLive, FatalLive)
      )
    ),
    scope
  ).pipe(Effect.withConfigProvider(configFrom(workerConfig(url))))

const publish = (
  channel: ConfirmChannel,
  event: DomainEvent | { event: string; body: Buffer },
  options: { messageId?: string; headers?: Record<string, unknown> } = {}
) =>
  Effect.promise(async () => {
    const [key, body] = "body" in event ? [event.event, event.body] : [event.event, Buffer.from(JSON.stringify(event))]
    channel.publish(EXCHANGE, key, body, {
      persistent: true,
      messageId: options.messageId ?? ("eventId" in event ? event.eventId : undefined),
      headers: options.headers
    })
    await channel.waitForConfirms()
  })

const getAll = (channel: ConfirmChannel, queue: string) =>
  Effect.promise(async () => {
    const out: Array<GetMessage> = []
    for (;;) {
      const m = await channel.get(queue, { noAck: true })
      if (m === false) return out
      out.push(m)
    }
  })

describe("worker integration", () => {
  it.live("processes events end to end, once, and dead-letters what it cannot", () =>
    Effect.gen(function*() {
      const { url, vhost } = yield* withVhost("worker")
      const { channel } = yield* withAmqp(url)
      yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100, 200] })
      const created: Array<string> = []
      yield* Effect.addFinalizer(() => deleteEventRows(created))

      const workerScope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(workerScope, Exit.void))
      const ctx = yield* startWorker(url, workerScope)
      const metrics = Context.get(ctx, WorkerMetrics)

      // 1. write → outbox → broker → processed once (the relay publishes the outbox row).
      const sql = yield* SqlClient.SqlClient
      const viaOutbox = ticketCreated()
      created.push(viaOutbox.eventId)
      yield* withEntities([viaOutbox])
      yield* sql.withTransaction(appendEvent(viaOutbox))
      const relayScope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(relayScope, Exit.void))
      yield* Layer.buildWithScope(RelayLive.pipe(Layer.provide(PublisherLive), Layer.provide(FatalLive)), relayScope)
        .pipe(
          Effect.withConfigProvider(configFrom(workerConfig(url)))
        )
      yield* waitUntil(
        "the outbox event to be processed",
        Effect.map(countRows("processed_events", [viaOutbox.eventId]), (n) => n === 1)
      )
      // The relay marks its row only after the broker's confirm, which can come after the worker's claim.
      yield* waitUntil(
        "the outbox row marked published by the relay",
        Effect.map(unpublished([viaOutbox.eventId]), (n) => n === 0)
      )
      expect(yield* countRows("notifications", [viaOutbox.eventId])).toBe(1)
      yield* Scope.close(relayScope, Exit.void)

      // 2. The same messageId twice → one claim, one notification, a duplicate counted.
      const before = yield* metrics.totals
      const twice = ticketCreated()
      created.push(twice.eventId)
      yield* withEntities([twice])
      yield* publish(channel, twice)
      yield* publish(channel, twice)
      yield* waitUntil(
        "the duplicate to be seen",
        Effect.map(metrics.totals, (t) => t.duplicates > before.duplicates && t.processed > before.processed)
      )
      expect(yield* countRows("processed_events", [twice.eventId])).toBe(1)
      expect(yield* countRows("notifications", [twice.eventId])).toBe(1)

      // 3. Poison → DLQ at once, with its reason; never retried.
      yield* publish(channel, { event: "message.sent", body: Buffer.from("{not json") })
      yield* publish(channel, {
        event: "ticket.updated",
        body: Buffer.from(JSON.stringify({ event: "ticket.updated", eventId: "nope" }))
      })
      yield* waitUntil(
        "two poison messages in the DLQ",
        Effect.map(metrics.totals, (t) => t.poison >= before.poison + 2)
      )
      const poison = yield* getAll(channel, DLQ)
      expect(poison).toHaveLength(2)
      const reasons = poison.map((m) => String(m.properties.headers?.["opsdesk-error"]))
      expect(reasons.some((r) => r.includes("not valid JSON"))).toBe(true)
      expect(reasons.some((r) => r.includes("eventId"))).toBe(true)
      expect(poison.every((m) => m.properties.headers?.["opsdesk-error-kind"] === "poison")).toBe(true)
      expect(poison.map((m) => m.properties.headers?.["opsdesk-original-queue"]).sort()).toEqual([
        "message.sent.queue",
        "ticket.updated.queue"
      ])

      // 4. A failing handler → retries held by the broker (2), then the DLQ with headers.
      const doomed = messageSent()
      created.push(doomed.eventId)
      yield* Ref.update(failing, (s) => new Set([...s, doomed.eventId]))
      const healthy = messageSent()
      created.push(healthy.eventId)
      yield* withEntities([doomed, healthy])
      yield* publish(channel, doomed)
      yield* publish(channel, healthy)
      yield* waitUntil(
        "the failing message to be dead-lettered",
        Effect.map(metrics.totals, (t) => t.failed > before.failed)
      )
      expect(yield* countRows("processed_events", [healthy.eventId])).toBe(1)
      const [dead, ...rest] = yield* getAll(channel, DLQ)
      expect(rest).toHaveLength(0)
      expect(dead!.properties.messageId).toBe(doomed.eventId)
      expect(dead!.properties.headers?.["opsdesk-error"]).toBe("Simulated failure")
      expect(dead!.properties.headers?.["opsdesk-error-kind"]).toBe("failed")
      expect(dead!.properties.headers?.["opsdesk-attempts"]).toBe(3)
      expect(dead!.properties.headers?.["opsdesk-retry-count"]).toBe(2)
      expect(dead!.properties.headers?.["opsdesk-original-routing-key"]).toBe("message.sent")
      expect(JSON.parse(dead!.content.toString()).eventId).toBe(doomed.eventId)
      expect((yield* metrics.totals).retried - before.retried).toBe(2)
      expect(yield* countRows("processed_events", [doomed.eventId])).toBe(0)

      // 5. The connection is closed under the worker → it reconnects and carries on.
      yield* closeAllConnections(vhost)
      const { channel: channel2 } = yield* withAmqp(url)
      const afterReconnect = ticketCreated()
      created.push(afterReconnect.eventId)
      yield* withEntities([afterReconnect])
      yield* Effect.sleep("300 millis")
      yield* publish(channel2, afterReconnect)
      yield* waitUntil(
        "processing after a reconnect",
        Effect.map(countRows("processed_events", [afterReconnect.eventId]), (n) => n === 1)
      )
      expect(yield* countRows("notifications", [afterReconnect.eventId])).toBe(1)

      yield* Scope.close(workerScope, Exit.void)
    }).pipe(Effect.scoped, Effect.provide(InfraLive)), 90_000)
})
