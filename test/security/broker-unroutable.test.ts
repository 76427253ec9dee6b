/**
 * Finding 4: with a binding deleted, the broker confirmed the relay's publish
 * of an event no queue would take, the row was marked published, and the
 * event was never processed: lost, with no error, metric or log line.
 *
 * Now the relay publishes as mandatory: a returned event stays unpublished
 * with the reason in `last_error`, is counted, and is published once its
 * route exists again, while the routable events of the same batch go out.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { declareTopology, EXCHANGE, queueFor } from "../../src/Broker/Topology.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { withEntities } from "../support/Entities.js"
import {
  countRows,
  deleteEventRows,
  InfraLive,
  messageSent,
  ticketCreated,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"
import { counterTotal, depth, startRelay, startWorker } from "./support/Broker.js"

interface Row {
  readonly eventId: string
  readonly published: boolean
  readonly lastError: string | null
}

describe("broker: unroutable events", () => {
  it.live(
    "an event with no route stays in the outbox with its reason, the rest of its batch goes out, and it flows once routed",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("unroutable")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const sql = yield* SqlClient.SqlClient

        const sentinel = ticketCreated()
        const unroutable = [ticketCreated(), ticketCreated(), ticketCreated()]
        const routable = messageSent()
        const all = [sentinel, ...unroutable, routable]
        const ids = all.map((e) => e.eventId)
        yield* Effect.addFinalizer(() => deleteEventRows(ids))
        yield* withEntities(all)

        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        yield* startWorker(url, scope)
        yield* startRelay(url, scope, { OUTBOX_UNROUTABLE_RETRY_MS: 200 })

        // Both running: an event goes all the way through.
        yield* sql.withTransaction(appendEvent(sentinel))
        yield* waitUntil(
          "the sentinel to be processed",
          Effect.map(countRows("processed_events", [sentinel.eventId]), (n) => n === 1)
        )

        // The attack (or a careless operator): the binding of ticket.created.queue is deleted.
        yield* Effect.promise(() => channel.unbindQueue(queueFor("ticket.created"), EXCHANGE, "ticket.created"))
        const unroutableBefore = yield* counterTotal("opsdesk_outbox_unroutable_total")

        // One transaction, so one relay batch: three events with no route and one with a route.
        yield* sql.withTransaction(Effect.forEach([...unroutable, routable], (e) => appendEvent(e), { discard: true }))
        const rowsOf = (events: ReadonlyArray<{ readonly eventId: string }>) =>
          sql<Row>`SELECT event_id::text, published_at IS NOT NULL AS published, last_error FROM outbox
          WHERE event_id::text IN ${sql.in(events.map((e) => e.eventId))}`
        yield* waitUntil(
          "the routable event to be processed and the others to be settled by the relay",
          Effect.gen(function*() {
            const processed = yield* countRows("processed_events", [routable.eventId])
            const rows = yield* rowsOf(unroutable)
            return processed === 1 && rows.length === 3 && rows.every((r) => r.published || r.lastError !== null)
          })
        )
        const held = yield* rowsOf(unroutable)
        for (const row of held) {
          expect(row.published, `${row.eventId} must not be marked published`).toBe(false)
          expect(row.lastError).toMatch(/no queue is bound to routing key ticket\.created/)
        }
        expect((yield* rowsOf([routable]))[0]!.published).toBe(true)
        expect(yield* countRows("processed_events", unroutable.map((e) => e.eventId))).toBe(0)
        expect(yield* depth(channel, queueFor("ticket.created"))).toBe(0)
        expect((yield* counterTotal("opsdesk_outbox_unroutable_total")) - unroutableBefore).toBeGreaterThanOrEqual(3)

        // The route is back: every held event is published and processed, once.
        yield* Effect.promise(() => channel.bindQueue(queueFor("ticket.created"), EXCHANGE, "ticket.created"))
        yield* waitUntil(
          "the held events to be processed",
          Effect.map(countRows("processed_events", unroutable.map((e) => e.eventId)), (n) => n === 3)
        )
        expect((yield* rowsOf(unroutable)).every((r) => r.published)).toBe(true)
        for (const e of unroutable) {
          expect(yield* countRows("processed_events", [e.eventId])).toBe(1)
          expect(yield* countRows("notifications", [e.eventId])).toBe(1)
        }
        expect(yield* countRows("notifications", [routable.eventId])).toBe(0) // its only watcher is its author
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )
})
