/**
 * The processor's steps (src/Worker/Processor.ts) one at a time, over the
 * in-memory layers: decode, plan (which writes and settles nothing), commit
 * (which claims, then settles), and fail's choice between a broker-held
 * retry and the DLQ. The whole pipeline is covered by processor.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Effect, FastCheck as fc, Layer, type Schedule } from "effect"
import type { Delivery } from "../../src/Broker/Delivery.js"
import { DLQ_HEADERS, RETRY_HEADER } from "../../src/Broker/Headers.js"
import { queueFor, retryDelays } from "../../src/Broker/Topology.js"
import { DomainEvent, eventFingerprint, isTicketEvent, MessageSent, TicketCreated } from "../../src/Domain/Events.js"
import { HandlerError } from "../../src/Worker/Faults.js"
import { plan } from "../../src/Worker/Handlers.js"
import { commit, decode, fail, type Item, makeEnv, nextTier, planBatch, tier1 } from "../../src/Worker/Processor.js"
import { ControllableFaults } from "../layers/ControllableFaults.js"
import { encodeBody, eventIdOf, MemoryBroker } from "../layers/MemoryBroker.js"
import { MemoryEventStore } from "../layers/MemoryEventStore.js"
import { driven, quietLogs, testConfig, WorkerTestLayer } from "../layers/WorkerHarness.js"

const eventArb = Arbitrary.make(DomainEvent)
const sample = <A>(arb: fc.Arbitrary<A>, seed: number) => fc.sample(arb, { numRuns: 1, seed })[0]!

const inWorld = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  self.pipe(Effect.provide(Layer.merge(WorkerTestLayer, quietLogs)))

/** A delivery that is only ever decoded: settling it would be a bug in `decode`. */
const stub = (body: Uint8Array, headers: Readonly<Record<string, unknown>> = {}, queue = "q"): Delivery => ({
  queue,
  routingKey: "rk",
  body,
  messageId: undefined,
  headers,
  ack: Effect.die("decode settled a delivery"),
  requeue: Effect.die("decode settled a delivery"),
  retryLater: () => Effect.die("decode settled a delivery"),
  deadLetter: () => Effect.die("decode settled a delivery")
})

/** An event's delivery on its own queue. */
const stubOf = (event: DomainEvent, headers: Readonly<Record<string, unknown>> = {}) =>
  stub(encodeBody(JSON.stringify(event)), headers, queueFor(event.event))

/** Published (about entities that exist), taken and decoded: items ready for the later steps. */
const itemsOf = (events: ReadonlyArray<DomainEvent>, headers: Readonly<Record<string, unknown>> = {}) =>
  Effect.gen(function*() {
    const broker = yield* MemoryBroker
    yield* (yield* MemoryEventStore).addEntitiesOf(events)
    for (const e of events) yield* broker.publishEvent(e, { headers })
    return decode(yield* broker.take(events.length), testConfig().maxRetries).items
  })

describe("decode", () => {
  it.prop("splits a batch into poison, first copies (in order) and later copies", [
    fc.array(fc.oneof(eventArb.map((e) => ({ event: e })), fc.string().map((garbage) => ({ garbage }))), {
      maxLength: 12
    }),
    fc.array(fc.nat(), { maxLength: 6 })
  ], ([inputs, repeats]) => {
    // Some events appear again later in the batch.
    const events = inputs.flatMap((i) => ("event" in i ? [i.event] : []))
    const all = [...inputs, ...(events.length === 0 ? [] : repeats.map((r) => ({ event: events[r % events.length]! })))]
    const deliveries = all.map((i) => ("event" in i ? stubOf(i.event) : stub(encodeBody(`{${i.garbage}`))))
    const { copies, items, poison, rejected } = decode(deliveries, 3)
    expect(rejected).toEqual([])
    expect(poison.map((p) => deliveries.indexOf(p.delivery))).toEqual(
      all.flatMap((input, i) => ("event" in input ? [] : [i]))
    )
    for (const p of poison) expect(p.reason.length).toBeGreaterThan(0)
    const ids = all.flatMap((i) => ("event" in i ? [i.event.eventId] : []))
    expect(items.map((i) => i.event.eventId)).toEqual([...new Set(ids)])
    expect(copies).toHaveLength(ids.length - new Set(ids).size)
    for (const c of copies) {
      expect(items.some((i) => i.event.eventId === c.event.eventId && i.delivery !== c.delivery)).toBe(true)
    }
    for (const i of [...items, ...copies]) expect(i.span).toBeUndefined()
  })

  it("reads the attempt from the retry header, clamped to MAX_RETRIES", () => {
    const event = sample(eventArb, 1)
    expect(decode([stubOf(event)], 3).items[0]!.attempt).toBe(0)
    expect(decode([stubOf(event, { [RETRY_HEADER]: 2 })], 3).items[0]!.attempt).toBe(2)
    expect(decode([stubOf(event, { [RETRY_HEADER]: 99 })], 3).items[0]!.attempt).toBe(3)
  })

  it("rejects an event on another event's queue (invalid) and a later use of an id with another payload (conflict)", () => {
    const [a, b] = sample(fc.uniqueArray(eventArb, { minLength: 2, maxLength: 2, selector: (e) => e.event }), 8)
    const upper = { ...a!, eventId: a!.eventId.toUpperCase() }
    const reused = { ...a!, payload: { ...a!.payload, id: crypto.randomUUID() } } as DomainEvent
    const misrouted = stub(encodeBody(JSON.stringify(b)), {}, queueFor(a!.event))
    const deliveries = [stubOf(a!), misrouted, stubOf(upper), stubOf(reused)]
    const { copies, items, poison, rejected } = decode(deliveries, 3)
    expect(poison).toEqual([])
    expect(items.map((i) => i.delivery)).toEqual([deliveries[0]])
    // The same event with its id in upper case is a copy: ids decode in lower case.
    expect(copies.map((i) => [i.delivery, i.event.eventId])).toEqual([[deliveries[2], a!.eventId]])
    expect(rejected.map((r) => [r.item.delivery, r.kind])).toEqual([[misrouted, "invalid"], [
      deliveries[3],
      "conflict"
    ]])
    expect(rejected[0]!.reason).toBe(
      `Misrouted: a ${b!.event} event arrived on ${queueFor(a!.event)} (its queue is ${queueFor(b!.event)})`
    )
    expect(rejected[1]!.fingerprints).toEqual({ received: eventFingerprint(reused), claimed: eventFingerprint(a!) })
  })
})

describe("plan", () => {
  it.effect("plans every event with Handlers.plan and the watchers read once; writes and settles nothing", () =>
    inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig())
      const store = yield* MemoryEventStore
      const message = sample(Arbitrary.make(MessageSent), 2)
      const ticket = sample(Arbitrary.make(TicketCreated), 3)
      const watcher = crypto.randomUUID()
      yield* store.setWatchers(message.payload.ticketId, [watcher])
      const items = yield* itemsOf([message, ticket])
      const plans = yield* planBatch(env, items)
      expect(plans.planned.map((p) => p.plan)).toEqual([plan(message, plans.watchers), plan(ticket, plans.watchers)])
      expect(plans.watchers.get(message.payload.ticketId)).toEqual([watcher])
      expect(plans.stumbled).toEqual([])
      expect(plans.unplanned).toEqual([])
      const st = yield* store.get
      expect({ watcherLookups: st.watcherLookups, commits: st.commits, claims: st.claims.size }).toEqual({
        watcherLookups: 1,
        commits: [],
        claims: 0
      })
      expect((yield* (yield* MemoryBroker).get).ops).toEqual([])
    })))

  it.effect("a failed fault check is stumbled (for tier 1); watchers that cannot be read leave message.sent unplanned", () =>
    inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig())
      const store = yield* MemoryEventStore
      const faults = yield* ControllableFaults
      const message = sample(Arbitrary.make(MessageSent), 4)
      const [good, bad] = sample(
        fc.uniqueArray(eventArb.filter(isTicketEvent), { minLength: 2, maxLength: 2, selector: (e) => e.eventId }),
        5
      )
      yield* faults.failAlways(bad!.eventId)
      yield* store.failNextWatcherLookups(1, { transient: false })
      const plans = yield* planBatch(env, yield* itemsOf([message, good!, bad!]))
      expect(plans.planned.map((p) => p.event.eventId)).toEqual([good!.eventId])
      expect(plans.stumbled.map((s) => [s.item.event.eventId, s.error._tag])).toEqual([[bad!.eventId, "HandlerError"]])
      expect(plans.unplanned.map((u) => u.item.event.eventId)).toEqual([message.eventId])
      expect((yield* (yield* MemoryBroker).get).ops).toEqual([])
    })))
})

describe("commit", () => {
  it.effect("claims and writes the plans in one commit, then acks; a second commit of the same events is all duplicates", () =>
    inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig())
      const store = yield* MemoryEventStore
      const broker = yield* MemoryBroker
      const events = sample(fc.uniqueArray(eventArb, { minLength: 3, maxLength: 3, selector: (e) => e.eventId }), 6)
      const { planned } = yield* planBatch(env, yield* itemsOf(events))
      yield* driven(commit(env, planned, 0))
      let st = yield* store.get
      expect(st.commits.map((c) => [c.outcome, c.eventIds])).toEqual([["committed", events.map((e) => e.eventId)]])
      expect(st.claims.size).toBe(3)
      expect((yield* broker.get).ops.map((o) => [o.op, eventIdOf(o.message)])).toEqual(
        events.map((e) => ["ack", e.eventId])
      )
      const notifications = st.notifications.length

      const again = yield* planBatch(env, yield* itemsOf(events))
      yield* driven(commit(env, again.planned, 0))
      st = yield* store.get
      expect(st.commits.map((c) => c.claimed.length)).toEqual([3, 0])
      expect(st.notifications.length).toBe(notifications)
      expect((yield* broker.get).ops.filter((o) => o.op === "ack")).toHaveLength(6)
      expect((yield* env.metrics.totals).duplicates).toBe(3)
    })))

  it.effect("a rejected batch is split: the others commit alone, the bad one is retried then failed", () =>
    inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig())
      const store = yield* MemoryEventStore
      const broker = yield* MemoryBroker
      const [a, bad, b] = sample(
        fc.uniqueArray(eventArb, { minLength: 3, maxLength: 3, selector: (e) => e.eventId }),
        7
      )
      yield* store.rejectBatchesContaining(bad!.eventId)
      const { planned } = yield* planBatch(env, yield* itemsOf([a!, bad!, b!]))
      yield* driven(commit(env, planned, 0))
      const st = yield* store.get
      expect([...st.claims.values()].map((c) => c.eventId).sort()).toEqual([a!.eventId, b!.eventId].sort())
      // The whole batch, then each alone; the bad one with its tier-1 retries.
      expect(st.commits[0]!.eventIds).toHaveLength(3)
      expect(st.commits.filter((c) => c.eventIds.length === 1 && c.eventIds[0] === bad!.eventId)).toHaveLength(
        1 + env.cfg.immediateRetries
      )
      const ops = (yield* broker.get).ops
      expect(ops.filter((o) => o.op === "retryLater").map((o) => eventIdOf(o.message))).toEqual([bad!.eventId])
      expect(ops.filter((o) => o.op === "ack").map((o) => eventIdOf(o.message)).sort()).toEqual(
        [a!.eventId, bad!.eventId, b!.eventId].sort()
      )
    })))
})

describe("fail", () => {
  it.prop("tier 2 while retries are left, with the policy's delay for that attempt; the DLQ after", [
    fc.integer({ min: 0, max: 6 }),
    fc.integer({ min: 0, max: 8 })
  ], ([maxRetries, attempt]) =>
    Effect.runSync(inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig({ maxRetries }))
      const delays = retryDelays(env.cfg)
      expect(nextTier(env, attempt)).toEqual(
        attempt < maxRetries ? { _tag: "Retry", delayMs: delays[attempt] } : { _tag: "DeadLetter" }
      )
    }))))

  it.effect.prop(
    "retries a copy with the next attempt, or dead-letters it with the attempts made; the original is acked either way",
    {
      event: eventArb,
      maxRetries: fc.integer({ min: 0, max: 4 }),
      attempt: fc.integer({ min: 0, max: 4 })
    },
    ({ attempt, event, maxRetries }) =>
      inWorld(Effect.gen(function*() {
        const cfg = testConfig({ maxRetries })
        const env = yield* makeEnv(cfg)
        const broker = yield* MemoryBroker
        yield* broker.publishEvent(event, { headers: attempt === 0 ? {} : { [RETRY_HEADER]: attempt } })
        const [item] = decode(yield* broker.take(1), maxRetries).items as ReadonlyArray<Item>
        yield* fail(env, item!, "boom")
        const s = yield* broker.get
        const made = Math.min(attempt, maxRetries)
        expect(s.ops.map((o) => o.op)).toEqual([made < maxRetries ? "retryLater" : "deadLetter", "ack"])
        if (made < maxRetries) {
          expect(s.retry.map((r) => [r.attempt, r.delayMs, r.error])).toEqual([[
            made + 1,
            retryDelays(cfg)[made],
            "boom"
          ]])
          expect(s.dlq).toEqual([])
        } else {
          expect(s.retry).toEqual([])
          expect(
            s.dlq.map((
              m
            ) => [m.headers[DLQ_HEADERS.kind], m.headers[DLQ_HEADERS.attempts], m.headers[DLQ_HEADERS.reason]])
          ).toEqual([["failed", made + 1, "boom"]])
        }
      })),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("tier 1 (in-process retries) only for small batches; a big one goes straight to tier 2", () =>
    inWorld(Effect.gen(function*() {
      const env = yield* makeEnv(testConfig({ immediateRetries: 2 }))
      const triesWith = (schedule: Schedule.Schedule<unknown, HandlerError>) =>
        Effect.gen(function*() {
          let tries = 0
          const check = Effect.suspend(() => {
            tries++
            return Effect.fail(new HandlerError({ message: "no" }))
          })
          yield* driven(Effect.either(Effect.retry(check, schedule)))
          return tries
        })
      expect(yield* triesWith(tier1(env, 1))).toBe(3)
      expect(yield* triesWith(tier1(env, 20))).toBe(3)
      expect(yield* triesWith(tier1(env, 21))).toBe(1)
    })))
})
