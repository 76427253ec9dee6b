/**
 * Finding 7 (the worker's half): anyone who can publish to the event queues
 * was believed. A `ticket.created` for a ticket that does not exist, put into
 * `message.sent.queue`, produced a real notification; metric labels were
 * taken from routing keys and headers (500 random ones made 500 series); and
 * an absurd `occurredAt` went into the lag histogram as it was.
 *
 * Now an event must arrive on its own queue and name entities that exist (in
 * the same statement that claims it), or it is dead-lettered as `invalid`
 * with the reason and has no effect; labels come from the fixed set of event
 * types (anything else is `unknown`); the lag is clamped to [0, 1 day] and the
 * clamped observations are counted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE, queueFor, RETRY_RETURN_EXCHANGE } from "../../src/Broker/Topology.js"
import { EVENT_NAMES } from "../../src/Domain/Events.js"
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
import { counterTotal, depth, getAll, publishRaw, seriesOf, startWorker } from "./support/Broker.js"

const LABELS = new Set<string>([...EVENT_NAMES, "unknown"])

describe("broker: the worker trusts no message", () => {
  it.live(
    "events about missing entities, or on the wrong queue, are dead-lettered as invalid and do nothing; real ones are processed",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("untrusted")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const real = ticketCreated()
        const realMessage = messageSent()
        const ghost = ticketCreated() // no such ticket
        const misrouted = ticketCreated() // its ticket exists, but it comes in through message.sent.queue
        const stolenOwner = ticketCreated() // a real ticket, but the event names someone else as its owner
        const ghostMessage = messageSent(real.payload.id, real.payload.ownerId) // a real ticket, no such message
        yield* withEntities([real, realMessage, misrouted, stolenOwner])
        const forgedOwner = { ...stolenOwner, payload: { ...stolenOwner.payload, ownerId: crypto.randomUUID() } }
        const all = [real, realMessage, ghost, misrouted, stolenOwner, ghostMessage]
        yield* Effect.addFinalizer(() => deleteEventRows(all.map((e) => e.eventId)))
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const start = yield* metrics.totals

        const json = (e: unknown) => Buffer.from(JSON.stringify(e))
        yield* publishRaw(channel, EXCHANGE, "ticket.created", json(ghost), { messageId: ghost.eventId })
        yield* publishRaw(channel, "", queueFor("message.sent"), json(misrouted), { messageId: misrouted.eventId })
        yield* publishRaw(channel, EXCHANGE, "ticket.created", json(forgedOwner), { messageId: stolenOwner.eventId })
        yield* publishRaw(channel, EXCHANGE, "message.sent", json(ghostMessage), { messageId: ghostMessage.eventId })
        yield* publishRaw(channel, EXCHANGE, "ticket.created", json(real), { messageId: real.eventId })
        yield* publishRaw(channel, EXCHANGE, "message.sent", json(realMessage), { messageId: realMessage.eventId })

        yield* waitUntil(
          "the real events to be processed and the others to be settled",
          Effect.gen(function*() {
            const t = yield* metrics.totals
            const settled = t.processed + t.failed + t.poison + t.retried + t.duplicates -
              (start.processed + start.failed + start.poison + start.retried + start.duplicates)
            return (yield* depth(channel, DLQ)) + settled >= all.length
          })
        )
        expect(yield* countRows("processed_events", [real.eventId, realMessage.eventId])).toBe(2)
        expect(yield* countRows("notifications", [real.eventId])).toBe(1)
        const forged = [ghost, misrouted, stolenOwner, ghostMessage]
        expect(yield* countRows("processed_events", forged.map((e) => e.eventId))).toBe(0)
        expect(yield* countRows("notifications", forged.map((e) => e.eventId))).toBe(0)

        const dead = yield* getAll(channel, DLQ)
        const byId = new Map(
          dead.map((m) => [JSON.parse(m.content.toString()).eventId as string, m.properties.headers ?? {}])
        )
        expect([...byId.keys()].sort()).toEqual(forged.map((e) => e.eventId).sort())
        for (const h of byId.values()) {
          expect(h[DLQ_HEADERS.kind]).toBe("invalid")
          expect(h[DLQ_HEADERS.attempts]).toBe(1)
        }
        expect(String(byId.get(ghost.eventId)![DLQ_HEADERS.reason])).toMatch(/ticket .* does not exist/)
        expect(String(byId.get(misrouted.eventId)![DLQ_HEADERS.reason])).toMatch(
          /ticket\.created event arrived on message\.sent\.queue/
        )
        expect(String(byId.get(stolenOwner.eventId)![DLQ_HEADERS.reason])).toMatch(/ticket .* does not exist/)
        expect(String(byId.get(ghostMessage.eventId)![DLQ_HEADERS.reason])).toMatch(/message .* does not exist/)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )

  it.live(
    "metric labels come from a fixed set, whatever the routing keys and headers say",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("labels")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const start = yield* metrics.totals

        // Poison arriving through the retry return exchange names its "original routing key" in a header.
        const N = 50
        for (let i = 0; i < N; i++) {
          const key = `attacker-${i}-${crypto.randomUUID()}`
          yield* publishRaw(channel, RETRY_RETURN_EXCHANGE, `1ms.${queueFor("ticket.created")}`, Buffer.from("nope"), {
            headers: { "opsdesk-original-routing-key": key }
          })
        }
        yield* waitUntil(
          "the poison to be dead-lettered",
          Effect.map(metrics.totals, (t) => t.poison - start.poison >= N)
        )
        yield* getAll(channel, DLQ)
        for (const name of ["opsdesk_worker_poison_total", "opsdesk_worker_processed_total"]) {
          for (const s of yield* seriesOf(name)) {
            expect(LABELS, `${name} ${JSON.stringify(s.tags)}`).toContain(s.tags["event"])
          }
        }
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )

  it.live(
    "an absurd occurredAt cannot skew the lag histogram: clamped to [0, 1 day], and counted",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("lag")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const start = yield* metrics.totals

        // A real event stamped decades in the future, and one from the epoch.
        const future = { ...ticketCreated(), occurredAt: "2999-01-01T00:00:00.000Z" }
        const past = { ...ticketCreated(), occurredAt: "1970-01-01T00:00:01.000Z" }
        yield* withEntities([future, past])
        yield* Effect.addFinalizer(() => deleteEventRows([future.eventId, past.eventId]))
        const lagBefore = yield* seriesOf("opsdesk_worker_lag_seconds")
        const sumOf = (series: typeof lagBefore) =>
          series.reduce((n, s) => n + ("sum" in s.state && typeof s.state.sum === "number" ? s.state.sum : 0), 0)
        const clampedBefore = yield* counterTotal("opsdesk_worker_lag_clamped_total")
        for (const e of [future, past]) {
          yield* publishRaw(channel, EXCHANGE, e.event, Buffer.from(JSON.stringify(e)), { messageId: e.eventId })
        }
        yield* waitUntil(
          "both to be processed",
          Effect.map(countRows("processed_events", [future.eventId, past.eventId]), (n) => n === 2)
        )
        // What Metrics records synchronously after the acks: wait for the counters, then read the histogram.
        yield* waitUntil(
          "the timings to be recorded",
          Effect.map(metrics.totals, (t) => t.processed - start.processed >= 2)
        )
        const added = sumOf(yield* seriesOf("opsdesk_worker_lag_seconds")) - sumOf(lagBefore)
        expect(added).toBeGreaterThanOrEqual(0)
        expect(added).toBeLessThanOrEqual(86_400 + 60)
        expect((yield* counterTotal("opsdesk_worker_lag_clamped_total")) - clampedBefore).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )
})
