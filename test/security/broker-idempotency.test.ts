/**
 * Finding 5: idempotency keyed on the eventId as written, so the same event
 * with its id in upper case was processed a second time (two claims, two
 * notifications); and a reused eventId with a different payload was skipped
 * silently, as if it were a copy.
 *
 * Now event ids are canonical (lower case) before they are claimed, and each
 * claim keeps a fingerprint of the event's payload: an exact copy is still a
 * silently absorbed duplicate, a reused id with another payload goes to the
 * DLQ as `conflict` with both fingerprints in its headers.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import { withEntities } from "../support/Entities.js"
import { deleteEventRows, InfraLive, ticketCreated, waitUntil, withAmqp, withVhost } from "../support/Env.js"
import { depth, getAll, publishRaw, startWorker } from "./support/Broker.js"

/** Rows of `table` for this event id, whatever the letter case they were written in. */
const rowsFor = (table: "processed_events" | "notifications", eventId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(table)} WHERE lower(event_id) = lower(${eventId})`
  ).pipe(
    Effect.map((rows) => rows[0]!.n),
    Effect.orDie
  )

describe("broker: idempotency", () => {
  it.live(
    "the same eventId in upper case is the same event; a reused id with another payload is dead-lettered as a conflict",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("idempotency")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const event = ticketCreated()
        const reused = ticketCreated()
        yield* withEntities([event, reused])
        const ids = [event.eventId, reused.eventId]
        yield* Effect.addFinalizer(() =>
          Effect.zipRight(
            deleteEventRows(ids),
            Effect.flatMap(
              SqlClient.SqlClient,
              (sql) => sql`DELETE FROM processed_events WHERE lower(event_id) IN ${sql.in(ids)}`.pipe(Effect.orDie)
            )
          )
        )
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const send = (body: unknown, messageId: string) =>
          publishRaw(channel, EXCHANGE, "ticket.created", Buffer.from(JSON.stringify(body)), { messageId })

        // 1. Letter case.
        yield* send(event, event.eventId)
        yield* waitUntil(
          "the event to be processed",
          Effect.map(rowsFor("processed_events", event.eventId), (n) => n === 1)
        )
        let before = yield* metrics.totals
        const upper = event.eventId.toUpperCase()
        yield* send({ ...event, eventId: upper }, upper)
        yield* waitUntil(
          "the upper-case copy to be settled",
          Effect.map(metrics.totals, (t) => t.duplicates > before.duplicates || t.processed > before.processed)
        )
        expect(yield* rowsFor("processed_events", event.eventId)).toBe(1)
        expect(yield* rowsFor("notifications", event.eventId)).toBe(1)

        // 2. The same id with another payload: a conflict, in the DLQ with both fingerprints; no second effect.
        yield* send(reused, reused.eventId)
        yield* waitUntil(
          "the first use to be processed",
          Effect.map(rowsFor("processed_events", reused.eventId), (n) => n === 1)
        )
        const forged = { ...reused, payload: { ...reused.payload, title: "Forged title" } }
        yield* send(forged, reused.eventId)
        yield* waitUntil("the reuse to be dead-lettered", Effect.map(depth(channel, DLQ), (n) => n === 1))
        const [dead, ...more] = yield* getAll(channel, DLQ)
        expect(more).toEqual([])
        const h = dead!.properties.headers ?? {}
        expect(h[DLQ_HEADERS.kind]).toBe("conflict")
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/already processed with another payload/)
        const [claimedRow] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<
            { fingerprint: string | null }
          >`SELECT fingerprint FROM processed_events WHERE event_id = ${reused.eventId}`)
        expect(claimedRow!.fingerprint).toMatch(/^[0-9a-f]{64}$/)
        expect(h[DLQ_HEADERS.claimedFingerprint]).toBe(claimedRow!.fingerprint)
        expect(h[DLQ_HEADERS.fingerprint]).toMatch(/^[0-9a-f]{64}$/)
        expect(h[DLQ_HEADERS.fingerprint]).not.toBe(claimedRow!.fingerprint)
        expect(JSON.parse(dead!.content.toString()).payload.title).toBe("Forged title")
        expect(yield* rowsFor("notifications", reused.eventId)).toBe(1)

        // 3. An exact copy (only its envelope's time differs) is still a quietly absorbed duplicate.
        before = yield* metrics.totals
        yield* send({ ...reused, occurredAt: new Date().toISOString() }, reused.eventId)
        yield* waitUntil("the copy to be absorbed", Effect.map(metrics.totals, (t) => t.duplicates > before.duplicates))
        expect(yield* depth(channel, DLQ)).toBe(0)
        expect(yield* rowsFor("processed_events", reused.eventId)).toBe(1)
        expect(yield* rowsFor("notifications", reused.eventId)).toBe(1)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )
})
