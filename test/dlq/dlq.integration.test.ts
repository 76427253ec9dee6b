/**
 * The Dlq service against the real RabbitMQ, in a vhost of its own. One
 * vhost, one helper connection and one Dlq service for the whole file (a
 * ManagedRuntime disposed after the last test); each test starts from empty
 * queues.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { DLQ, EXCHANGE, queueFor } from "../../src/Broker/Topology.js"
import { Dlq, type ReplayProgress } from "../../src/Dlq/Dlq.js"
import { closeAllConnections, configFrom, messageSent, ticketCreated, waitUntil } from "../support/Env.js"
import { bodyOf, deadLetter, depth, dlqFixture, drain } from "./support.js"

/** Each test: empty queues, then the body, with the file's broker and Dlq service. */
const test = dlqFixture({ name: "dlq", queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })

const ago = (ms: number) => new Date(Date.now() - ms)

describe("Dlq", () => {
  it.live(
    "list shows poisoned and failed messages with their reason, and leaves the DLQ intact and in order",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const failed = messageSent()
          yield* deadLetter(channel, { event: "message.sent", body: "{not json" }, {
            routingKey: "message.sent",
            error: "Body is not valid JSON (Expected property name)"
          })
          yield* deadLetter(channel, failed, { error: "Simulated failure", attempts: 3, failedAt: ago(90_000) })
          const other = ticketCreated()
          yield* deadLetter(channel, other)

          const entries = yield* dlq.list({ limit: 10 })
          expect(entries).toHaveLength(3)
          const [poison, fail, third] = entries
          expect(poison).toMatchObject({
            kind: "poison",
            event: "message.sent",
            eventId: null,
            originalRoutingKey: "message.sent",
            originalQueue: "message.sent.queue",
            attempts: 1,
            error: "Body is not valid JSON (Expected property name)",
            bodyPreview: "{not json",
            replayable: false
          })
          expect(fail).toMatchObject({
            kind: "failed",
            event: "message.sent",
            eventId: failed.eventId,
            messageId: failed.eventId,
            originalRoutingKey: "message.sent",
            originalQueue: "message.sent.queue",
            attempts: 3,
            error: "Simulated failure",
            replayable: true
          })
          expect(fail!.ageSeconds).toBeGreaterThanOrEqual(89)
          expect(fail!.ageSeconds).toBeLessThan(120)
          expect(third!.eventId).toBe(other.eventId)

          // Nothing consumed: same depth, same entries (ids stable), same order.
          expect(yield* dlq.depth).toBe(3)
          expect((yield* dlq.list({ limit: 10 })).map((e) => e.id)).toEqual(entries.map((e) => e.id))
          expect(new Set(entries.map((e) => e.id)).size).toBe(3)

          // limit and event filter.
          expect((yield* dlq.list({ limit: 1 })).map((e) => e.id)).toEqual([poison!.id])
          expect((yield* dlq.list({ event: "ticket.created" })).map((e) => e.eventId)).toEqual([other.eventId])
          expect(yield* dlq.list({ event: "ticket.updated" })).toEqual([])

          const left = yield* drain(channel, DLQ)
          expect(left.map(bodyOf)).toEqual(["{not json", JSON.stringify(failed), JSON.stringify(other)])
        })
      ),
    30_000
  )

  it.live(
    "replay by event id republishes that message to its original queue with the retry count reset, and removes only it",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const a = ticketCreated()
          const target = messageSent()
          const b = ticketCreated()
          yield* deadLetter(channel, a)
          yield* deadLetter(channel, target, {
            attempts: 3,
            extraHeaders: { "x-retry-count": 2, traceparent: "00-abc-def-01" }
          })
          yield* deadLetter(channel, b)
          yield* deadLetter(channel, { event: "message.sent", body: "nope" })

          const result = yield* dlq.replay({ eventId: target.eventId })
          expect(result).toMatchObject({ total: 4, scanned: 4, matched: 1, replayed: 1, skipped: 0 })

          const [copy, ...more] = yield* drain(channel, queueFor("message.sent"))
          expect(more).toHaveLength(0)
          expect(bodyOf(copy!)).toBe(JSON.stringify(target))
          expect(copy!.fields.exchange).toBe(EXCHANGE)
          expect(copy!.fields.routingKey).toBe("message.sent")
          expect(copy!.properties).toMatchObject({
            messageId: target.eventId,
            type: "message.sent",
            contentType: "application/json",
            deliveryMode: 2
          })
          const headers = copy!.properties.headers ?? {}
          for (
            const gone of [
              "opsdesk-retry-count",
              "x-retry-count",
              "opsdesk-last-error",
              "opsdesk-error",
              "opsdesk-error-kind",
              "opsdesk-attempts",
              "opsdesk-original-routing-key",
              "opsdesk-original-queue",
              "opsdesk-failed-at"
            ]
          ) {
            expect(headers).not.toHaveProperty(gone)
          }
          expect(headers["traceparent"]).toBe("00-abc-def-01")
          expect(Date.parse(String(headers["opsdesk-replayed-at"]))).toBeGreaterThan(Date.now() - 60_000)

          // The others stay, untouched and in order.
          expect(yield* depth(channel, queueFor("ticket.created"))).toBe(0)
          const left = yield* drain(channel, DLQ)
          expect(left.map(bodyOf)).toEqual([JSON.stringify(a), JSON.stringify(b), "nope"])
          expect(left[0]!.properties.headers?.["opsdesk-error"]).toBe("Simulated failure")
        })
      ),
    30_000
  )

  it.live(
    "replay by event type replays every message of that type",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const created = [ticketCreated(), ticketCreated()]
          const sent = messageSent()
          yield* deadLetter(channel, created[0]!)
          yield* deadLetter(channel, sent)
          yield* deadLetter(channel, created[1]!)

          const result = yield* dlq.replay({ event: "ticket.created" })
          expect(result).toMatchObject({ matched: 2, replayed: 2, skipped: 0 })
          const copies = yield* drain(channel, queueFor("ticket.created"))
          expect(copies.map(bodyOf)).toEqual(created.map((e) => JSON.stringify(e)))
          expect(yield* depth(channel, queueFor("message.sent"))).toBe(0)
          expect((yield* drain(channel, DLQ)).map(bodyOf)).toEqual([JSON.stringify(sent)])
        })
      ),
    30_000
  )

  it.live(
    "replay all skips poison and unroutable messages and reports why; they stay in the DLQ",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const ok = [ticketCreated(), messageSent()]
          yield* deadLetter(channel, ok[0]!)
          yield* deadLetter(channel, { event: "message.sent", body: "{not json" })
          yield* deadLetter(channel, ok[1]!)
          // Decodable JSON, but its routing key names no event we bind (and the body names none either).
          yield* deadLetter(channel, {
            event: "ticket.deleted",
            body: JSON.stringify({ event: "ticket.deleted", eventId: "x" })
          }, { kind: "failed" })
          // No routing key header and a body without `event`.
          yield* deadLetter(channel, { event: "message.sent", body: JSON.stringify({ hello: "world" }) }, {
            kind: "failed",
            routingKey: null
          })

          const result = yield* dlq.replay({ all: true })
          expect(result).toMatchObject({ matched: 5, replayed: 2, skipped: 3 })
          expect(result.skippedMessages.map((s) => s.reason)).toEqual([
            expect.stringContaining("poison"),
            expect.stringContaining("\"ticket.deleted\" is not a known event"),
            expect.stringContaining("no original routing key")
          ])
          expect(yield* depth(channel, queueFor("ticket.created"))).toBe(1)
          expect(yield* depth(channel, queueFor("message.sent"))).toBe(1)
          const left = yield* drain(channel, DLQ)
          expect(left.map((m) => m.properties.headers?.["opsdesk-error-kind"])).toEqual(["poison", "failed", "failed"])
        })
      ),
    30_000
  )

  it.live(
    "replays a long DLQ in windows, reporting progress, and counts what it replayed",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const events = Array.from({ length: 250 }, () => ticketCreated())
          for (const e of events) yield* deadLetter(channel, e)
          const seen: Array<ReplayProgress> = []
          const result = yield* dlq.replay({ all: true }, {
            progressEvery: 100,
            onProgress: (p) => Effect.sync(() => seen.push(p))
          })
          expect(result).toMatchObject({ total: 250, scanned: 250, replayed: 250, skipped: 0 })
          expect(seen.map((p) => [p.scanned, p.replayed])).toEqual([[100, 100], [200, 200], [250, 250]])
          expect(yield* depth(channel)).toBe(0)
          const copies = yield* drain(channel, queueFor("ticket.created"))
          expect(copies.map((m) => m.properties.messageId)).toEqual(events.map((e) => e.eventId))
        })
      ),
    60_000
  )

  it.live(
    "messages dead-lettered by RabbitMQ itself (x-death) are listed and replayable",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          // A consumer that rejects without requeue (as the seed's worker did): the queue's DLX moves it to the DLQ.
          const event = messageSent()
          channel.publish(EXCHANGE, "message.sent", Buffer.from(JSON.stringify(event)), {
            persistent: true,
            messageId: event.eventId
          })
          yield* Effect.promise(() => channel.waitForConfirms())
          const got = yield* Effect.promise(() => channel.get(queueFor("message.sent"), { noAck: false }))
          if (got === false) return expect.fail("the message did not arrive")
          channel.nack(got, false, false)
          yield* Effect.promise(async () => {
            while ((await channel.checkQueue(DLQ)).messageCount === 0) await new Promise((r) => setTimeout(r, 20))
          })

          const [entry] = yield* dlq.list()
          expect(entry).toMatchObject({
            kind: "failed",
            event: "message.sent",
            eventId: event.eventId,
            originalRoutingKey: "message.sent",
            originalQueue: "message.sent.queue",
            attempts: 1,
            error: "dead-lettered by RabbitMQ (rejected)",
            replayable: true
          })
          expect(entry!.failedAt).not.toBeNull()

          expect(yield* dlq.replay({ eventId: event.eventId })).toMatchObject({ replayed: 1 })
          const [copy] = yield* drain(channel, queueFor("message.sent"))
          expect(copy!.properties.headers?.["x-death"]).toBeUndefined()
          expect(copy!.properties.headers?.["x-first-death-queue"]).toBeUndefined()
          expect(yield* depth(channel)).toBe(0)
        })
      ),
    30_000
  )

  it.live(
    "purge --older-than removes only the old ones; purge without it removes the rest",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const old = [ticketCreated(), messageSent()]
          const recent = ticketCreated()
          yield* deadLetter(channel, old[0]!, { failedAt: ago(2 * 3_600_000) })
          yield* deadLetter(channel, recent, { failedAt: ago(10 * 60_000) })
          yield* deadLetter(channel, old[1]!, { failedAt: ago(26 * 3_600_000) })

          expect(yield* dlq.purge({ olderThan: "1 hour" })).toBe(2)
          expect((yield* dlq.list()).map((e) => e.eventId)).toEqual([recent.eventId])
          expect(yield* dlq.purge({ olderThan: "1 day" })).toBe(0)
          expect(yield* dlq.purge()).toBe(1)
          expect(yield* dlq.depth).toBe(0)
        })
      ),
    30_000
  )

  it.live(
    "page by anchor: the entries after one, within the reach it is given, and the queue left whole and in order",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const events = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? ticketCreated() : messageSent()))
          for (const e of events) yield* deadLetter(channel, e)
          const ids = (yield* dlq.list({ limit: 10 })).map((e) => e.id)
          const all = () => true
          const page = (after: string, reach = 100, keep: (e: { event: string | null }) => boolean = all) =>
            dlq.page({ after, reach, offset: 0, limit: 2, keep })

          expect(yield* page(ids[1]!)).toMatchObject({ before: 2, hasMore: true })
          expect((yield* page(ids[1]!)).entries.map((e) => e.id)).toEqual([ids[2], ids[3]])
          expect(yield* page(ids[3]!)).toMatchObject({ before: 4, hasMore: false })
          // A filter counts matches only, the anchor among them.
          const created = yield* page(ids[2]!, 100, (e) => e.event === "ticket.created")
          expect(created).toMatchObject({ before: 2, hasMore: false })
          expect(created.entries.map((e) => e.id)).toEqual([ids[4]])
          // A reach of 4 matching entries: the fifth entry is too deep, said so, not a page from elsewhere.
          expect((yield* page(ids[3]!, 4)).entries.map((e) => e.id)).toEqual([ids[4], ids[5]])
          const tooDeep = yield* Effect.flip(page(ids[4]!, 4))
          expect(tooDeep).toMatchObject({
            _tag: "DlqNotFound",
            message: expect.stringContaining("first 4 matching entries")
          })
          // With a filter, only matches count against the reach: ticket.created ids[4] has two before it.
          const isCreated = (e: { event: string | null }) => e.event === "ticket.created"
          expect((yield* page(ids[4]!, 3, isCreated)).entries).toEqual([])
          expect(yield* Effect.flip(page(ids[4]!, 2, isCreated))).toMatchObject({ _tag: "DlqNotFound" })
          yield* dlq.discard({ id: ids[1]! })
          const gone = yield* Effect.flip(page(ids[1]!))
          expect(gone).toMatchObject({ _tag: "DlqNotFound", message: expect.stringContaining("has left") })
          expect((yield* dlq.list({ limit: 10 })).map((e) => e.id)).toEqual([ids[0], ...ids.slice(2)])
        })
      ),
    30_000
  )

  it.live(
    "discard and replayOne act on one message by id; a missing id is DlqNotFound",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const events = [ticketCreated(), ticketCreated(), messageSent()]
          for (const e of events) yield* deadLetter(channel, e)
          const ids = (yield* dlq.list()).map((e) => e.id)

          yield* dlq.discard({ id: ids[1]! })
          expect((yield* dlq.list()).map((e) => e.id)).toEqual([ids[0], ids[2]])

          expect(yield* dlq.replayOne({ id: ids[2]! })).toMatchObject({ matched: 1, replayed: 1 })
          expect(yield* depth(channel, queueFor("message.sent"))).toBe(1)
          expect((yield* dlq.list()).map((e) => e.id)).toEqual([ids[0]])

          const missing = yield* Effect.flip(dlq.discard({ id: ids[1]! }))
          expect(missing._tag).toBe("DlqNotFound")
          expect((yield* Effect.flip(dlq.replayOne({ id: "0000000000000000" })))._tag).toBe("DlqNotFound")
          expect(yield* dlq.depth).toBe(1)
        })
      ),
    30_000
  )

  it.live("a broker that is unreachable is a BrokerError naming the problem", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(Dlq.Default).pipe(
        Effect.withConfigProvider(configFrom({ AMQP_URL: "amqp://guest:guest@127.0.0.1:1" }))
      )
      const error = yield* Effect.flip(Context.get(ctx, Dlq).depth)
      expect(error._tag).toBe("BrokerError")
      expect(error.message).toContain("Cannot connect to RabbitMQ")
    }).pipe(Effect.scoped), 30_000)

  // Last: it closes the file's helper connection too.
  it.live(
    "the service reconnects when its connection dropped between two calls",
    () =>
      test(({ channel, dlq, vhost }) =>
        Effect.gen(function*() {
          const event = ticketCreated()
          yield* deadLetter(channel, event)
          expect(yield* dlq.depth).toBe(1)
          expect(yield* dlq.isConnected).toBe(true)

          yield* closeAllConnections(vhost)
          yield* waitUntil(
            "the service to notice the dropped connection",
            Effect.map(dlq.isConnected, (c) => !c),
            "5 seconds"
          )

          expect((yield* dlq.list()).map((e) => e.eventId)).toEqual([event.eventId])
          expect(yield* dlq.isConnected).toBe(true)
        })
      ),
    30_000
  )
})
