/**
 * Envelope versions: events written before version 2 (no `version`, no
 * `actorId`, as the seed and older APIs publish them) are upcast and
 * processed by today's worker; a copy of one event in both versions is one
 * event; a version newer than the worker knows goes to the DLQ with the
 * reason. Unit checks of `upcast`, then the real broker and worker.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Scope } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import {
  ACTOR_FIELD,
  decodeEventJson,
  type DomainEvent,
  ENVELOPE_VERSION,
  eventFingerprint,
  upcast
} from "../../src/Domain/Events.js"
import { getAll, publishRaw, startWorker } from "../security/support/Broker.js"
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

/** The same event as an older API wrote it: version 1 had neither field. */
const asVersion1 = (event: DomainEvent) => {
  const { actorId: _actorId, version: _version, ...v1 } = event
  return v1
}

describe("envelope versions (unit)", () => {
  it("today's events carry the current version and their actor", () => {
    const created = ticketCreated()
    expect(created.version).toBe(ENVELOPE_VERSION)
    expect(created.actorId).toBe(created.payload.ownerId)
    const sent = messageSent()
    expect(sent.actorId).toBe(sent.payload.authorId)
  })

  it("a version 1 envelope decodes to the same event as its version 2 form, with the same fingerprint", () => {
    for (const event of [ticketCreated(), messageSent()]) {
      const fromV1 = decodeEventJson(JSON.stringify(asVersion1(event)))
      const fromV2 = decodeEventJson(JSON.stringify(event))
      expect(fromV1).toEqual(Either.right(event))
      expect(fromV2).toEqual(Either.right(event))
      expect(eventFingerprint(Either.getOrThrow(fromV1))).toBe(eventFingerprint(event))
    }
  })

  it("every event type has an upcaster's actor field in its payload", () => {
    for (const [name, field] of Object.entries(ACTOR_FIELD)) {
      const upcasted = upcast({ event: name, payload: { [field]: "a" } }, name as keyof typeof ACTOR_FIELD)
      expect(upcasted).toEqual(Either.right({ event: name, payload: { [field]: "a" }, actorId: "a", version: 2 }))
    }
  })

  it("a newer, zero, negative or non-numeric version is refused with a reason; a v1 without its actor is invalid", () => {
    const event = ticketCreated()
    expect(decodeEventJson(JSON.stringify({ ...event, version: ENVELOPE_VERSION + 1 }))).toEqual(
      Either.left(`Unsupported ticket.created envelope version 3: this worker reads versions 1 to 2`)
    )
    for (const version of [0, -1, 1.5, "2", null]) {
      const r = decodeEventJson(JSON.stringify({ ...event, version }))
      expect(Either.isLeft(r), String(version)).toBe(true)
    }
    const { ownerId: _ownerId, ...payload } = event.payload
    const r = decodeEventJson(JSON.stringify({ ...asVersion1(event), payload }))
    expect(r).toMatchObject({ _tag: "Left" })
    expect(Either.getLeft(r).pipe((o) => o._tag === "Some" ? o.value : "")).toMatch(/actorId|ownerId/)
  })
})

describe("envelope versions (broker and worker)", () => {
  it.live(
    "version 1 and version 2 events are both processed; a copy in the other version is a duplicate; version 3 is dead-lettered",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("versions")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const oldTicket = ticketCreated()
        const newTicket = ticketCreated()
        const oldMessage = messageSent()
        const future = ticketCreated()
        yield* withEntities([oldTicket, newTicket, oldMessage, future])
        const all = [oldTicket, newTicket, oldMessage, future]
        yield* Effect.addFinalizer(() => deleteEventRows(all.map((e) => e.eventId)))
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const start = yield* metrics.totals

        const json = (e: unknown) => Buffer.from(JSON.stringify(e))
        const publish = (routingKey: string, body: unknown, eventId: string) =>
          publishRaw(channel, EXCHANGE, routingKey, json(body), { messageId: eventId })
        yield* publish("ticket.created", asVersion1(oldTicket), oldTicket.eventId)
        yield* publish("ticket.created", newTicket, newTicket.eventId)
        yield* publish("message.sent", asVersion1(oldMessage), oldMessage.eventId)
        yield* publish("ticket.created", { ...future, version: 3 }, future.eventId)
        // The same event again, in the other version each.
        yield* publish("ticket.created", oldTicket, oldTicket.eventId)
        yield* publish("ticket.created", asVersion1(newTicket), newTicket.eventId)

        yield* waitUntil(
          "three events processed, two duplicates, one dead-lettered",
          Effect.map(metrics.totals, (t) =>
            t.processed - start.processed >= 3 && t.duplicates - start.duplicates >= 2 &&
            t.poison - start.poison >= 1)
        )
        for (const e of [oldTicket, newTicket, oldMessage]) {
          expect(yield* countRows("processed_events", [e.eventId]), e.event).toBe(1)
        }
        expect(yield* countRows("notifications", [oldTicket.eventId, newTicket.eventId])).toBe(2)
        expect(yield* countRows("processed_events", [future.eventId])).toBe(0)

        const dead = yield* getAll(channel, DLQ)
        expect(dead.map((m) => JSON.parse(m.content.toString()).eventId)).toEqual([future.eventId])
        expect(dead[0]!.properties.headers?.[DLQ_HEADERS.kind]).toBe("poison")
        expect(String(dead[0]!.properties.headers?.[DLQ_HEADERS.reason])).toMatch(/envelope version 3/)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )
})
