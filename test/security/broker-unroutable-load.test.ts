/**
 * Issue 12: an unroutable event is never lost, shown under load. A stream of
 * writes runs while the binding of ticket.created.queue is deleted and, later,
 * created again. While the route is missing, the relay's publishes come back
 * (mandatory) and nothing returned is marked published; once the route is
 * back, every event written before, during and after is delivered to the
 * worker exactly once (no duplicate delivery, one claim, one notification).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { declareTopology, EXCHANGE, queueFor } from "../../src/Broker/Topology.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { withEntities } from "../support/Entities.js"
import { countRows, deleteEventRows, InfraLive, ticketCreated, waitUntil, withAmqp, withVhost } from "../support/Env.js"
import { counterTotal, startRelay, startWorker } from "./support/Broker.js"

const WRITES = 240

describe("broker: unroutable events under load", () => {
  it.live(
    "a binding deleted and re-created during a stream of writes: nothing marked published while unroutable, every event delivered once",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("unroutable_load")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const sql = yield* SqlClient.SqlClient

        const events = Array.from({ length: WRITES }, () => ticketCreated())
        const ids = events.map((e) => e.eventId)
        yield* Effect.addFinalizer(() => deleteEventRows(ids))
        yield* withEntities(events)

        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        yield* startWorker(url, scope)
        yield* startRelay(url, scope, { OUTBOX_UNROUTABLE_RETRY_MS: 200 })
        const duplicatesBefore = yield* counterTotal("opsdesk_worker_duplicates_total")
        const unroutableBefore = yield* counterTotal("opsdesk_outbox_unroutable_total")

        // The stream: one write every ~10 ms, each its own transaction (as the API writes).
        let written = 0
        const writer = yield* Effect.forEach(events, (e) =>
          sql.withTransaction(appendEvent(e)).pipe(
            Effect.zipRight(Effect.sync(() => written++)),
            Effect.zipRight(Effect.sleep("10 millis"))
          ), { discard: true }).pipe(Effect.fork)

        const ours = (where: string) =>
          sql.unsafe<{ n: number }>(
            `SELECT count(*)::int AS n FROM outbox WHERE event_id::text = ANY($1::text[]) AND ${where}`,
            [ids]
          ).pipe(Effect.map((rows) => rows[0]!.n))
        const returned = "last_error LIKE 'Unroutable:%'"

        // Some events go through, then the binding is deleted under the stream.
        yield* waitUntil(
          "the first events to be processed",
          Effect.map(countRows("processed_events", ids), (n) => n >= 20)
        )
        yield* Effect.promise(() => channel.unbindQueue(queueFor("ticket.created"), EXCHANGE, "ticket.created"))
        const writtenAtUnbind = written

        // The relay's publishes come back while writes go on; none of the returned rows is marked published.
        yield* waitUntil(
          "returned events to pile up in the outbox while writes go on",
          Effect.map(ours(`${returned} AND published_at IS NULL`), (n) => n >= 30 && written > writtenAtUnbind + 30),
          "60 seconds"
        )
        expect(yield* ours(`${returned} AND published_at IS NOT NULL`)).toBe(0)
        const processedWhileUnbound = yield* countRows("processed_events", ids)
        // Still none published after a few more relay rounds (retry every 200 ms), and none processed.
        yield* Effect.sleep("1 second")
        expect(yield* ours(`${returned} AND published_at IS NOT NULL`)).toBe(0)
        expect(yield* countRows("processed_events", ids)).toBe(processedWhileUnbound)

        // The route comes back while writes go on; then the stream ends.
        yield* Effect.promise(() => channel.bindQueue(queueFor("ticket.created"), EXCHANGE, "ticket.created"))
        yield* Fiber.join(writer)

        yield* waitUntil(
          "every event to be processed",
          Effect.map(countRows("processed_events", ids), (n) => n === WRITES),
          "90 seconds"
        )
        // The relay marks a row published when its batch's transaction commits, after the broker's confirm; the
        // worker can claim the event before that commit, so the last batch's rows are awaited, not read at once.
        yield* waitUntil("every row to be marked published", Effect.map(ours("published_at IS NULL"), (n) => n === 0))
        // Exactly once: one claim and one notification each, and no duplicate delivery reached the worker.
        const claims = yield* sql.unsafe<{ eventId: string; n: number }>(
          `SELECT event_id, count(*)::int AS n FROM processed_events WHERE event_id = ANY($1::text[]) GROUP BY event_id`,
          [ids]
        )
        expect(claims).toHaveLength(WRITES)
        expect(claims.every((c) => c.n === 1)).toBe(true)
        expect(yield* countRows("notifications", ids)).toBe(WRITES)
        expect((yield* counterTotal("opsdesk_worker_duplicates_total")) - duplicatesBefore).toBe(0)
        expect((yield* counterTotal("opsdesk_outbox_unroutable_total")) - unroutableBefore).toBeGreaterThanOrEqual(30)
        // The held ones kept their reason after they flowed (the row says it was returned before).
        expect(yield* ours(`${returned} AND published_at IS NOT NULL`)).toBeGreaterThanOrEqual(30)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    180_000
  )
})
