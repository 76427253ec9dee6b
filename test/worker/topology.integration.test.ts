/**
 * Topology and publishing edge cases against the real RabbitMQ and PostgreSQL.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Scope } from "effect"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { declareTopology, QUEUES } from "../../src/Broker/Topology.js"
import { Fatal, FatalLive } from "../../src/Fatal.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { FaultsNone } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import {
  configFrom,
  deleteEventRows,
  InfraLive,
  ticketCreated,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

describe("topology", () => {
  it.live("a queue declared with the other QUEUE_TYPE is a clear, fatal start-up error", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("qtype")
      const { connection } = yield* withAmqp(url)
      const channel = yield* Effect.promise(() => connection.createChannel())
      channel.on("error", () => undefined)
      yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [1000] })

      const other = yield* Effect.promise(() => connection.createChannel())
      other.on("error", () => undefined)
      const error = yield* Effect.flip(declareTopology(other, { queueType: "quorum", retryDelaysMs: [1000] }))
      expect(error._tag).toBe("TopologyError")
      expect(error.message).toContain("tickets.dlq")
      expect(error.message).toContain("QUEUE_TYPE")

      // The worker reports it through Fatal (the entrypoint then exits non-zero) instead of reconnecting forever.
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const fatal = yield* Deferred.make<never, { readonly message: string }>()
      yield* Layer.buildWithScope(
        WorkerLive.pipe(
          Layer.provide(Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsNone, WorkerMetricsLive)),
          Layer.provide(Layer.succeed(Fatal, fatal))
        ),
        scope
      ).pipe(Effect.withConfigProvider(configFrom({ AMQP_URL: url, QUEUE_TYPE: "quorum" })))
      const reported = yield* Effect.flip(Deferred.await(fatal)).pipe(Effect.timeout("10 seconds"))
      expect(reported.message).toContain("already exists with different settings")
    }).pipe(Effect.scoped, Effect.provide(InfraLive)), 60_000)

  it.live(
    "writes succeed while the broker is unreachable; their events flow once it is back",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("outbox")
        const sql = yield* SqlClient.SqlClient
        const events = [ticketCreated(), ticketCreated(), ticketCreated()]
        const ids = events.map((e) => e.eventId)
        yield* Effect.addFinalizer(() => deleteEventRows(ids))
        const relay = RelayLive.pipe(Layer.provide(PublisherLive), Layer.provide(FatalLive))

        // A relay whose broker is down (nothing listens on port 1).
        const downScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(downScope, Exit.void))
        yield* Layer.buildWithScope(relay, downScope).pipe(
          Effect.withConfigProvider(
            configFrom({ AMQP_URL: "amqp://guest:guest@127.0.0.1:1", OUTBOX_POLL_INTERVAL_MS: 100 })
          )
        )
        for (const e of events) yield* sql.withTransaction(appendEvent(e))
        yield* Effect.sleep("500 millis")
        const unpublished = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE event_id::text IN ${
          sql.in(ids)
        } AND published_at IS NULL`
        expect(unpublished[0]!.n).toBe(3)
        yield* Scope.close(downScope, Exit.void)

        // The broker is back: a relay that reaches it publishes the backlog, confirmed.
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })
        const upScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(upScope, Exit.void))
        yield* Layer.buildWithScope(relay, upScope).pipe(
          Effect.withConfigProvider(configFrom({ AMQP_URL: url, OUTBOX_POLL_INTERVAL_MS: 100 }))
        )
        yield* waitUntil(
          "the backlog to be published",
          sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE event_id::text IN ${
            sql.in(ids)
          } AND published_at IS NULL`.pipe(
            Effect.map((rows) => rows[0]!.n === 0)
          )
        )
        const depth = yield* Effect.promise(() => channel.checkQueue(QUEUES[0]))
        expect(depth.messageCount).toBeGreaterThanOrEqual(3)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    60_000
  )
})
