/**
 * Finding 6: a message whose headers are just small enough to be published
 * (~64 KB) cannot be copied: the copy adds OpsDesk's headers, and amqplib
 * refuses to encode a header table that big. The DLQ copy of a non-JSON body
 * failed, so the message went back to its queue, once a second, forever; the
 * retry copy of a failing event failed the same way.
 *
 * Now a copy that cannot be encoded goes to the DLQ with the oversized
 * headers dropped and named in its reason, and never back to its queue.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Ref, Scope } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE, queueFor } from "../../src/Broker/Topology.js"
import { withEntities } from "../support/Entities.js"
import { countRows, deleteEventRows, InfraLive, ticketCreated, waitUntil, withAmqp, withVhost } from "../support/Env.js"
import { depth, failingIds, getAll, publishRaw, startWorker } from "./support/Broker.js"

/** Encodes to a 65,515-byte header table: amqplib publishes it (its limit is 65,536), but not with ~100 bytes more. */
const BIG = { "x-big": "a".repeat(65_500) }

describe("broker: oversized headers", () => {
  it.live(
    "a message whose copy cannot be encoded ends in the DLQ once, trimmed, with the reason; never back in its queue",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("bigheaders")
        const { channel } = yield* withAmqp(url)
        yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
        const failing = ticketCreated()
        const sentinel = ticketCreated()
        yield* withEntities([failing, sentinel])
        yield* Effect.addFinalizer(() => deleteEventRows([failing.eventId, sentinel.eventId]))
        yield* Ref.update(failingIds, (s) => new Set([...s, failing.eventId]))
        yield* Effect.addFinalizer(() =>
          Ref.update(failingIds, (s) => new Set([...s].filter((id) => id !== failing.eventId)))
        )
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const metrics = yield* startWorker(url, scope)
        const start = yield* metrics.totals

        // 1. Poison: a body that is not JSON, with the big header; its DLQ copy would carry more.
        const queue = queueFor("message.sent")
        yield* publishRaw(channel, "", queue, Buffer.from("{not json"), {
          messageId: "big-poison",
          headers: { ...BIG, "x-small": "kept" }
        })
        yield* waitUntil("the poison message to reach the DLQ", Effect.map(depth(channel, DLQ), (n) => n === 1))
        let [dead, ...more] = yield* getAll(channel, DLQ)
        expect(more).toEqual([])
        let h = dead!.properties.headers ?? {}
        expect(dead!.content.toString()).toBe("{not json")
        expect(dead!.properties.messageId).toBe("big-poison")
        expect(h[DLQ_HEADERS.kind]).toBe("poison")
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/not valid JSON/)
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/x-big/)
        expect(h["x-big"]).toBeUndefined()
        expect(h["x-small"]).toBe("kept")
        expect(h[DLQ_HEADERS.queue]).toBe(queue)
        yield* waitUntil("its queue to be empty", Effect.map(depth(channel, queue), (n) => n === 0))

        // 2. The retry path: a valid event with the big header whose handler fails cannot be copied for a retry.
        yield* publishRaw(channel, EXCHANGE, failing.event, Buffer.from(JSON.stringify(failing)), {
          messageId: failing.eventId,
          headers: BIG
        })
        yield* waitUntil("the failing event to reach the DLQ", Effect.map(depth(channel, DLQ), (n) => n === 1))
        ;[dead, ...more] = yield* getAll(channel, DLQ)
        expect(more).toEqual([])
        h = dead!.properties.headers ?? {}
        expect(JSON.parse(dead!.content.toString()).eventId).toBe(failing.eventId)
        expect(h[DLQ_HEADERS.kind]).toBe("poison")
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/retry/)
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/x-big/)
        expect(h["x-big"]).toBeUndefined()
        expect(yield* countRows("processed_events", [failing.eventId])).toBe(0)
        yield* waitUntil("its queue to be empty", Effect.map(depth(channel, queueFor(failing.event)), (n) => n === 0))

        // The worker went on: an event published afterwards is processed, and nothing came back meanwhile.
        yield* publishRaw(channel, EXCHANGE, sentinel.event, Buffer.from(JSON.stringify(sentinel)), {
          messageId: sentinel.eventId
        })
        yield* waitUntil(
          "the sentinel to be processed",
          Effect.map(countRows("processed_events", [sentinel.eventId]), (n) => n === 1)
        )
        expect(yield* depth(channel, DLQ)).toBe(0)
        expect(yield* depth(channel, queue)).toBe(0)
        const end = yield* metrics.totals
        expect(end.poison - start.poison).toBe(2)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    90_000
  )
})
