/**
 * A message that takes its whole batch down (a defect outside its handler's
 * own failure, so the batch is requeued) looped forever on a classic queue,
 * which counts no redeliveries, and held its batch neighbours with it. Now its
 * redeliveries are counted in PostgreSQL (src/Worker/CrashCounter.ts): it is
 * isolated from its neighbours after its second delivery, and dead-lettered as
 * `crash-loop` after CRASH_LOOP_LIMIT redeliveries, counted across worker
 * restarts (a worker killed while processing it counts as a crash too).
 *
 * On the code before this (no counter, the batch requeued as a whole), the
 * culprit never reaches the DLQ: the wait for it times out.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Ref, Scope } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { CrashCounterLive } from "../../src/Worker/CrashCounter.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { Faults } from "../../src/Worker/Faults.js"
import { WorkerMetrics, WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { getAll, publishRaw } from "../security/support/Broker.js"
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

const LIMIT = 3

/**
 * Faults for one worker: the culprit's check dies (a defect: the whole batch
 * fails); with `hangs`, its third call never ends: the worker is then "killed"
 * while processing it, by closing its scope.
 */
const crashingFaults = (culprit: string, calls: Ref.Ref<number>, hangs: boolean) =>
  Layer.succeed(
    Faults,
    Faults.of({
      enabled: true,
      check: (event: DomainEvent) =>
        event.eventId !== culprit ? Effect.void : Ref.updateAndGet(calls, (n) => n + 1).pipe(
          Effect.flatMap((n) =>
            hangs && n > LIMIT - 1
              ? Effect.never
              : Effect.dieMessage(`Simulated defect in the commit step of ${culprit} (call ${n})`)
          )
        )
    })
  )

const startWorker = (url: string, scope: Scope.Scope, faults: Layer.Layer<Faults>) =>
  Layer.buildWithScope(
    WorkerLive.pipe(
      Layer.provideMerge(
        Layer.mergeAll(EventStoreLive, TicketListCacheLive(), faults, WorkerMetricsLive, FatalLive, CrashCounterLive)
      )
    ),
    scope
  ).pipe(
    Effect.withConfigProvider(configFrom({
      AMQP_URL: url,
      CRASH_LOOP_LIMIT: LIMIT,
      MAX_RETRIES: 1,
      RETRY_INITIAL_DELAY_MS: 100,
      RETRY_MAX_DELAY_MS: 200,
      IMMEDIATE_RETRIES: 0,
      METRICS_INTERVAL_MS: 600_000,
      SHUTDOWN_TIMEOUT_MS: 300,
      AMQP_RECONNECT_INITIAL_MS: 100,
      AMQP_RECONNECT_MAX_MS: 500
    })),
    Effect.map((ctx) => Context.get(ctx, WorkerMetrics))
  )

const publishEvent = (channel: Parameters<typeof publishRaw>[0], event: DomainEvent) =>
  publishRaw(channel, EXCHANGE, event.event, Buffer.from(JSON.stringify(event)), {
    messageId: event.eventId,
    contentType: "application/json"
  })

describe("worker: crash loops", () => {
  it.live(
    "a message that takes its batch down is isolated, then dead-lettered as crash-loop, its count surviving a restart; its neighbours are processed once",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("crashloop")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const sql = yield* SqlClient.SqlClient

        const culprit = ticketCreated()
        const neighbours = Array.from({ length: 6 }, () => ticketCreated())
        const all = [culprit, ...neighbours]
        const ids = all.map((e) => e.eventId)
        const keys = all.map((e) => `ticket.created.queue/id:${e.eventId}`)
        yield* Effect.addFinalizer(() =>
          Effect.zipRight(
            deleteEventRows(ids),
            sql`DELETE FROM delivery_attempts WHERE message_key IN ${sql.in(keys)}`.pipe(Effect.orDie)
          )
        )
        yield* withEntities(all)
        const attempts = sql<{ deliveries: number }>`
          SELECT deliveries FROM delivery_attempts WHERE message_key = ${keys[0]!}`

        // Worker 1: the culprit's batch dies twice, then the worker "dies" while processing it.
        const firstCalls = yield* Ref.make(0)
        const first = yield* Scope.make()
        yield* startWorker(url, first, crashingFaults(culprit.eventId, firstCalls, true))
        // All in one burst, so they share the culprit's first batch.
        yield* Effect.forEach([culprit, ...neighbours], (e) => publishEvent(channel, e), { discard: true })

        yield* waitUntil(
          "the neighbours to be processed while the culprit is stuck in worker 1",
          Effect.gen(function*() {
            const processed = yield* countRows("processed_events", neighbours.map((e) => e.eventId))
            return processed === neighbours.length && (yield* Ref.get(firstCalls)) === LIMIT
          }),
          "60 seconds"
        )
        // Its redeliveries so far are in PostgreSQL: 2 (the first delivery is never counted: it was not a redelivery).
        expect((yield* attempts)[0]?.deliveries).toBe(LIMIT - 1)
        expect(yield* countRows("processed_events", [culprit.eventId])).toBe(0)

        // The worker goes (it was stuck: its unacked message goes back to the queue), another comes.
        // (SHUTDOWN_TIMEOUT_MS bounds the wait for the stuck batch: before, a batch that never ended held shutdown.)
        yield* Scope.close(first, Exit.void)
        const secondCalls = yield* Ref.make(0)
        const second = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(second, Exit.void))
        const metrics = yield* startWorker(url, second, crashingFaults(culprit.eventId, secondCalls, false))

        yield* waitUntil(
          "the culprit to reach the DLQ",
          Effect.map(Effect.promise(() => channel.checkQueue(DLQ)), (q) => q.messageCount === 1),
          "60 seconds"
        )
        const [dead] = yield* getAll(channel, DLQ)
        const headers = dead!.properties.headers ?? {}
        expect(dead!.properties.messageId).toBe(culprit.eventId)
        expect(headers[DLQ_HEADERS.kind]).toBe("crash-loop")
        expect(headers[DLQ_HEADERS.attempts]).toBe(LIMIT + 1)
        expect(String(headers[DLQ_HEADERS.reason])).toMatch(/^Crash loop: delivered 4 times/)
        expect(String(headers[DLQ_HEADERS.reason])).toContain("Simulated defect in the commit step")
        // Worker 2 never ran it: the count it read was worker 1's.
        expect(yield* Ref.get(secondCalls)).toBe(0)
        expect((yield* metrics.totals).crashLoops).toBe(1)

        // Nothing lost, nothing doubled: each neighbour processed once, the culprit never; its count is gone.
        for (const e of neighbours) expect(yield* countRows("processed_events", [e.eventId])).toBe(1)
        expect(yield* countRows("notifications", neighbours.map((e) => e.eventId))).toBe(neighbours.length)
        expect(yield* countRows("processed_events", [culprit.eventId])).toBe(0)
        expect(yield* attempts).toEqual([])
        const left = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM delivery_attempts WHERE message_key IN ${sql.in(keys)}`
        expect(left[0]!.n).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    120_000
  )
})
