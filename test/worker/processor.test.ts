/**
 * Unit and property tests of the worker's consumer logic (src/Worker/Processor.ts)
 * over in-memory doubles of the broker (MemoryBroker), the database
 * (MemoryEventStore) and the fault injector (ControllableFaults), with the
 * in-memory listing cache (ControllableCache where Redis must fail) and the
 * real metrics. Schedules run under the TestClock (`driven`), so holds and
 * immediate retries take no real time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, type Context, Effect, FastCheck as fc, Fiber, Layer, Option, TestClock, TestContext } from "effect"
import { attemptOf, DLQ_HEADERS, RETRY_HEADER, SEED_RETRY_HEADER } from "../../src/Broker/Headers.js"
import { queueFor, retryDelays } from "../../src/Broker/Topology.js"
import type { WorkerConfig } from "../../src/Config.js"
import {
  DomainEvent,
  EVENT_NAMES,
  eventFingerprint,
  isTicketEvent,
  MessageSent,
  TicketCreated
} from "../../src/Domain/Events.js"
import { TicketListCache } from "../../src/Tickets/ListCache.js"
import { plan, type Watchers } from "../../src/Worker/Handlers.js"
import { WorkerMetrics } from "../../src/Worker/Metrics.js"
import { makeProcessor } from "../../src/Worker/Processor.js"
import { ControllableCache } from "../layers/ControllableCache.js"
import { ControllableFaults } from "../layers/ControllableFaults.js"
import {
  type BrokerMessage,
  type BrokerOp,
  type BrokerState,
  encodeBody,
  eventIdOf,
  MemoryBroker
} from "../layers/MemoryBroker.js"
import { MemoryEventStore } from "../layers/MemoryEventStore.js"
import {
  drain,
  type DrainOptions,
  driven,
  quietLogs,
  testConfig,
  withTestClock,
  WorkerTestLayer,
  WorkerTestLayerWithFlakyRedis
} from "../layers/WorkerHarness.js"

const eventArb = Arbitrary.make(DomainEvent)
const ticketEventArb = eventArb.filter(isTicketEvent)
const messageSentArb = Arbitrary.make(MessageSent)
const ticketCreatedArb = Arbitrary.make(TicketCreated)
const eventsArb = (min: number, max: number) =>
  fc.uniqueArray(eventArb, { minLength: min, maxLength: max, selector: (e) => e.eventId })

/** Everything a test needs from the in-memory world, plus the processor under test. */
const world = (cfg: WorkerConfig) =>
  Effect.gen(function*() {
    const broker = yield* MemoryBroker
    const store = yield* MemoryEventStore
    const faults = yield* ControllableFaults
    const metrics = yield* WorkerMetrics
    const cache = yield* TicketListCache
    const processBatch = yield* makeProcessor(cfg)
    /** Publishes an event whose ticket or message exists, as the API's events do. */
    const publish = (event: DomainEvent, options?: Parameters<typeof broker.publishEvent>[1]) =>
      Effect.zipRight(store.addEntitiesOf([event]), broker.publishEvent(event, options))
    const run = <R = never>(options?: DrainOptions<R>) =>
      driven(drain(processBatch, options)).pipe(
        Effect.tap((report) => {
          expect(report.exhausted, "the broker never drained").toBe(false)
          expect(report.stranded, "deliveries left unsettled by the processor").toEqual([])
        })
      )
    return { broker, store, faults, metrics, cache, processBatch, publish, run, cfg }
  })

type TestWorld = Layer.Layer.Success<typeof WorkerTestLayer>
const inWorld = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, TestWorld>> =>
  self.pipe(Effect.provide(Layer.merge(WorkerTestLayer, quietLogs)))

const opsOf = (s: BrokerState, op: BrokerOp["op"], eventId?: string) =>
  s.ops.filter((o) => o.op === op && (eventId === undefined || eventIdOf(o.message) === eventId))
const retriesOf = (s: BrokerState, eventId?: string) =>
  opsOf(s, "retryLater", eventId).flatMap((o) => (o.op === "retryLater" ? [o] : []))
const dlqOf = (s: BrokerState, eventId: string) => s.dlq.filter((m) => eventIdOf(m) === eventId)
const header = (m: BrokerMessage, name: string) => m.headers[name]

const expectDrained = (s: BrokerState) => {
  expect(s.ready).toEqual([])
  expect([...s.unacked.values()]).toEqual([])
  expect(s.retry).toEqual([])
}

/** A DLQ copy's body as an event, its id in canonical (lower) case: a copy may have been published in another. */
const bodyEvent = (m: BrokerMessage): unknown => {
  const json = JSON.parse(new TextDecoder().decode(m.body)) as { eventId: string }
  return { ...json, eventId: json.eventId.toLowerCase() }
}

const expectFailedDlqEntry = (m: BrokerMessage, event: DomainEvent, cfg: WorkerConfig) => {
  expect(header(m, DLQ_HEADERS.kind)).toBe("failed")
  expect(header(m, DLQ_HEADERS.attempts)).toBe(cfg.maxRetries + 1)
  expect(header(m, DLQ_HEADERS.routingKey)).toBe(event.event)
  expect(header(m, DLQ_HEADERS.queue)).toBe(queueFor(event.event))
  expect(header(m, DLQ_HEADERS.reason)).toEqual(expect.any(String))
  expect(String(header(m, DLQ_HEADERS.reason)).length).toBeGreaterThan(0)
  expect(Number.isNaN(Date.parse(String(header(m, DLQ_HEADERS.failedAt))))).toBe(false)
  expect(m.queue).toBe("tickets.dlq")
  expect(bodyEvent(m)).toEqual(event)
}

/** The claim of a processed event: its canonical id, with its fingerprint. */
const claimOf = (event: DomainEvent) => ({
  eventId: event.eventId,
  eventType: event.event,
  processor: "worker",
  fingerprint: eventFingerprint(event)
})

/** The processed outcome of one event: one claim, exactly the notifications `plan` computes, nothing in the DLQ. */
const expectProcessedOnce = (
  ctx: { readonly store: MemoryEventStore; readonly broker: MemoryBroker },
  event: DomainEvent,
  watchers: Watchers = new Map()
) =>
  Effect.gen(function*() {
    const claims = yield* ctx.store.claimsOf(event.eventId)
    expect(claims).toEqual([claimOf(event)])
    expect(yield* ctx.store.notificationsOf(event.eventId)).toEqual(plan(event, watchers).notifications)
    expect(dlqOf(yield* ctx.broker.get, event.eventId)).toEqual([])
  })

// ---------------------------------------------------------------------------------------------
// 1. Exactly once, nothing lost, nothing left unacked: the whole failure zoo at once.
// ---------------------------------------------------------------------------------------------

type Fault =
  | { readonly _tag: "none" }
  | { readonly _tag: "firstAttempts"; readonly n: number } // fails at attempts < n (n <= MAX_RETRIES): tier-2 retries
  | { readonly _tag: "firstCalls"; readonly n: number } // fails the first n checks (n <= IMMEDIATE_RETRIES): tier-1 absorbs it
  | { readonly _tag: "rejectCommit"; readonly n: number } // the next n commits holding it are rejected (split + immediate retry absorb it)
  | { readonly _tag: "always" } // doomed: must end in the DLQ, with no effect
  | { readonly _tag: "missing" } // its ticket or message does not exist: the DLQ as invalid, at once, with no effect
  | { readonly _tag: "misrouted" } // published to another event's queue: the DLQ as invalid, at once, with no effect
  | { readonly _tag: "conflict" } // its id was claimed before with another payload: the DLQ as a conflict, no effect

const IMMEDIATE_RETRIES = 2

const faultArb = (maxRetries: number): fc.Arbitrary<Fault> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.constant<Fault>({ _tag: "none" }) },
    {
      weight: maxRetries > 0 ? 3 : 0,
      arbitrary: fc.integer({ min: 1, max: Math.max(1, maxRetries) }).map((n): Fault => ({ _tag: "firstAttempts", n }))
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: IMMEDIATE_RETRIES }).map((n): Fault => ({ _tag: "firstCalls", n }))
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: IMMEDIATE_RETRIES }).map((n): Fault => ({ _tag: "rejectCommit", n }))
    },
    { weight: 1, arbitrary: fc.constant<Fault>({ _tag: "always" }) },
    { weight: 1, arbitrary: fc.constant<Fault>({ _tag: "missing" }) },
    { weight: 1, arbitrary: fc.constant<Fault>({ _tag: "misrouted" }) },
    { weight: 1, arbitrary: fc.constant<Fault>({ _tag: "conflict" }) }
  )

/** Faults whose event must end in the DLQ, and with which kind. */
const DOOMED: Partial<Record<Fault["_tag"], string>> = {
  always: "failed",
  missing: "invalid",
  misrouted: "invalid",
  conflict: "conflict"
}

/** Another event's queue than `event`'s own. */
const otherQueue = (event: DomainEvent) => queueFor(EVENT_NAMES.find((n) => n !== event.event)!)

/** The fingerprint an earlier use of a conflicting event's id was claimed with. */
const EARLIER = "e".repeat(64)

const stepArb = fc.nat({ max: 20 })
const countAt = fc.record({ step: stepArb, count: fc.integer({ min: 1, max: 3 }) })

const scenarioArb = fc
  .record({ events: eventsArb(1, 8), maxRetries: fc.integer({ min: 0, max: 4 }) })
  .chain(({ events, maxRetries }) => {
    const index = fc.nat({ max: events.length - 1 })
    return fc.record({
      events: fc.constant(events),
      maxRetries: fc.constant(maxRetries),
      faults: fc.array(faultArb(maxRetries), { minLength: events.length, maxLength: events.length }),
      watchers: fc.array(fc.record({ others: fc.array(fc.uuid(), { maxLength: 3 }), withAuthor: fc.boolean() }), {
        minLength: events.length,
        maxLength: events.length
      }),
      // Publish order: every event once, plus duplicate publishes, shuffled (same or different batches).
      order: fc.array(index, { maxLength: 6 }).chain((extra) => {
        const all = [...events.keys(), ...extra]
        return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length })
      }),
      // Duplicates published later on, possibly after the first copy was processed.
      late: fc.array(fc.record({ step: stepArb, index }), { maxLength: 3 }),
      // Which publishes write the eventId in upper case (cycled over every publish): the same event all the same.
      upper: fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
      batchSizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
      parallel: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
      transientCommits: fc.array(countAt, { maxLength: 2 }),
      lostCommitResponses: fc.array(stepArb, { maxLength: 2 }),
      // The channel dies while a batch is committing: its acks become no-ops, its copies fail to publish.
      crashDuringCommit: fc.array(stepArb, { maxLength: 2 }),
      transientWatcherLookups: fc.array(stepArb, { maxLength: 2 }),
      lostAcks: fc.array(countAt, { maxLength: 2 }),
      retryPublishFailures: fc.array(countAt, { maxLength: 2 }),
      dlqPublishFailures: fc.array(countAt, { maxLength: 2 })
    })
  })

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never

/** How often each failure mode actually happened over all runs: the property must not pass vacuously. */
const coverage = {
  runs: 0,
  processed: 0,
  deadLettered: 0,
  duplicatePublishes: 0,
  duplicatesSuppressed: 0,
  retriesScheduled: 0,
  transientCommits: 0,
  lostCommitResponses: 0,
  rejectedCommits: 0,
  transientWatcherLookups: 0,
  lostAcks: 0,
  crashes: 0,
  crashesMidCommit: 0,
  publishFailures: 0,
  concurrentBatches: 0,
  invalid: 0,
  conflicts: 0,
  upperCasePublishes: 0
}

const runScenario = (sc: Scenario) =>
  Effect.gen(function*() {
    const cfg = testConfig({ maxRetries: sc.maxRetries })
    const w = yield* world(cfg)
    const { broker, faults, store } = w

    for (const [i, event] of sc.events.entries()) {
      if (event.event === "message.sent") {
        const { others, withAuthor } = sc.watchers[i]!
        yield* store.setWatchers(event.payload.ticketId, withAuthor ? [...others, event.payload.authorId] : others)
      }
      const fault = sc.faults[i]!
      if (fault._tag !== "missing") yield* store.addEntitiesOf([event])
      if (fault._tag === "always") yield* faults.failAlways(event.eventId)
      if (fault._tag === "firstAttempts") yield* faults.failFirstAttempts(event.eventId, fault.n)
      if (fault._tag === "firstCalls") yield* faults.failFirstCalls(event.eventId, fault.n)
      if (fault._tag === "rejectCommit") yield* store.rejectBatchesContaining(event.eventId, fault.n)
      if (fault._tag === "conflict") yield* store.claimAs(event.eventId, event.event, EARLIER)
    }
    let publishes = 0
    const publish = (i: number) => {
      const event = sc.events[i]!
      const upper = sc.upper[publishes++ % sc.upper.length]!
      if (upper) coverage.upperCasePublishes++
      return broker.publishEvent(event, {
        ...(upper ? { eventId: event.eventId.toUpperCase() } : {}),
        ...(sc.faults[i]!._tag === "misrouted" ? { queue: otherQueue(event) } : {})
      })
    }
    for (const i of sc.order) yield* publish(i)

    const pendingLate = [...sc.late]
    const at = <A extends { readonly step: number }>(list: ReadonlyArray<A>, step: number) =>
      list.filter((x) => x.step === step)
    const report = yield* w.run({
      batchSizes: sc.batchSizes,
      parallel: sc.parallel,
      beforeStep: (step) =>
        Effect.gen(function*() {
          for (const { count } of at(sc.transientCommits, step)) yield* store.failNextCommits(count)
          for (const s of sc.lostCommitResponses) if (s === step) yield* store.loseNextCommitResponses(1)
          for (const s of sc.crashDuringCommit) {
            if (s === step) {
              yield* store.onNextCommit(
                Effect.asVoid(Effect.zipRight(broker.crash, Effect.sync(() => coverage.crashesMidCommit++)))
              )
            }
          }
          for (const s of sc.transientWatcherLookups) {
            if (s === step) yield* store.failNextWatcherLookups(1, { transient: true })
          }
          for (const { count } of at(sc.lostAcks, step)) yield* broker.loseNextAcks(count)
          for (const { count } of at(sc.retryPublishFailures, step)) yield* broker.failNextRetryLater(count)
          for (const { count } of at(sc.dlqPublishFailures, step)) yield* broker.failNextDeadLetter(count)
          for (const late of at(pendingLate, step)) {
            pendingLate.splice(pendingLate.indexOf(late), 1)
            yield* publish(late.index)
          }
        }),
      onIdle: Effect.gen(function*() {
        if (pendingLate.length === 0) return false
        for (const late of pendingLate.splice(0)) yield* publish(late.index)
        return true
      })
    })

    const b = yield* broker.get
    const st = yield* store.get
    const totals = yield* w.metrics.totals
    expectDrained(b)
    // No defects here, so a requeue can only follow a copy (retry or DLQ) the broker did not confirm: the
    // original goes back after a pause, unless a crash redelivered it first (which one depends on scheduling).
    expect(
      opsOf(b, "requeue").filter((o) => b.deliveries.get(o.tag)?.publishFailed !== true),
      "requeue happens only on a defect or after an unconfirmed copy"
    ).toEqual([])

    let expectedNotifications = 0
    for (const [i, event] of sc.events.entries()) {
      const claims = yield* store.claimsOf(event.eventId)
      const notes = yield* store.notificationsOf(event.eventId)
      const dlq = dlqOf(b, event.eventId)
      const fault = sc.faults[i]!._tag
      const doomed = DOOMED[fault]
      if (doomed !== undefined) {
        // Lost to nobody: in the DLQ (once per surviving copy), with no effect.
        expect(claims).toEqual(
          fault === "conflict" ? [{ ...claimOf(event), fingerprint: EARLIER }] : []
        )
        expect(notes).toEqual([])
        expect(dlq.length).toBeGreaterThan(0)
        for (const m of dlq) {
          if (fault === "always") expectFailedDlqEntry(m, event, cfg)
          else {
            // Never retried: at once, on its first attempt.
            expect(m.headers[DLQ_HEADERS.kind]).toBe(doomed)
            expect(m.headers[DLQ_HEADERS.attempts]).toBe(1)
            expect(bodyEvent(m)).toEqual(event)
            expect(String(m.headers[DLQ_HEADERS.reason])).toMatch(
              fault === "missing" ? /does not exist/ : fault === "misrouted" ? /^Misrouted: / : /^Conflict: /
            )
            if (fault === "conflict") {
              expect(m.headers[DLQ_HEADERS.fingerprint]).toBe(eventFingerprint(event))
              expect(m.headers[DLQ_HEADERS.claimedFingerprint]).toBe(EARLIER)
            }
          }
        }
        expect(retriesOf(b, event.eventId).length === 0 || fault === "always").toBe(true)
      } else {
        // Its effect happened exactly once.
        const expected = plan(event, st.watchers).notifications
        expectedNotifications += expected.length
        expect(claims).toEqual([claimOf(event)])
        expect(notes).toEqual(expected)
        expect(dlq).toEqual([])
      }
    }
    expect(st.claims.size).toBe(
      sc.events.filter((_, i) => DOOMED[sc.faults[i]!._tag] === undefined || sc.faults[i]!._tag === "conflict").length
    )
    expect(st.notifications.length).toBe(expectedNotifications)

    // Every scheduled retry is the next attempt, with the policy's delay for it.
    const delays = retryDelays(cfg)
    for (const r of retriesOf(b)) {
      expect(r.attempt).toBeGreaterThanOrEqual(1)
      expect(r.attempt).toBeLessThanOrEqual(cfg.maxRetries)
      expect(r.delayMs).toBe(delays[r.attempt - 1])
      expect(r.attempt).toBe(attemptOf(r.message.headers, cfg.maxRetries) + 1)
    }
    // Metrics agree with what the broker and the store saw.
    expect(totals.failed + totals.invalid + totals.conflicts).toBe(b.dlq.length)
    expect(totals.failed).toBe(b.dlq.filter((m) => m.headers[DLQ_HEADERS.kind] === "failed").length)
    expect(totals.retried).toBe(retriesOf(b).length)
    expect(totals.poison).toBe(0)
    expect(totals.processed).toBe(
      st.commits.filter((c) => c.outcome === "committed").reduce((n, c) => n + c.claimed.length, 0)
    )

    coverage.runs++
    coverage.processed += st.claims.size
    coverage.deadLettered += b.dlq.length
    coverage.duplicatePublishes += sc.order.length + sc.late.length - sc.events.length
    coverage.duplicatesSuppressed += totals.duplicates
    coverage.retriesScheduled += totals.retried
    coverage.transientCommits += st.commits.filter((c) => c.outcome === "transient").length
    coverage.lostCommitResponses += st.commits.filter((c) => c.outcome === "lost-response").length
    coverage.rejectedCommits += st.commits.filter((c) => c.outcome === "rejected").length
    coverage.transientWatcherLookups += st.failedWatcherLookups
    coverage.lostAcks += opsOf(b, "ack-lost").length
    coverage.crashes += report.crashes
    coverage.publishFailures += opsOf(b, "retryLater-failed").length + opsOf(b, "deadLetter-failed").length
    coverage.concurrentBatches += report.concurrentSteps
    coverage.invalid += totals.invalid
    coverage.conflicts += totals.conflicts
  })

/** Runs of the big property; OPSDESK_PROP_RUNS=500 for a deeper search. */
const RUNS = Number(process.env["OPSDESK_PROP_RUNS"] ?? 50)

describe("Processor", () => {
  it(
    "(1) exactly once under duplicates, crashes, lost acks, outages, flaky handlers and rejected commits; nothing lost or left unacked",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          scenarioArb,
          (sc) => runScenario(sc).pipe(inWorld, Effect.provide(TestContext.TestContext), Effect.runPromise)
        ),
        { numRuns: RUNS }
      )
      expect(coverage.runs).toBe(RUNS)
      for (const [mode, count] of Object.entries(coverage)) {
        expect(count, `failure mode never exercised: ${mode}`).toBeGreaterThan(0)
      }
    },
    Math.max(60_000, RUNS * 500)
  )

  // -------------------------------------------------------------------------------------------
  // 2. Retries, then the DLQ.
  // -------------------------------------------------------------------------------------------

  it.effect.prop(
    "(2) an always-failing event is retried exactly MAX_RETRIES times on the policy's delays, then dead-lettered",
    {
      event: eventArb,
      maxRetries: fc.integer({ min: 0, max: 6 })
    },
    ({ event, maxRetries }) =>
      inWorld(Effect.gen(function*() {
        const cfg = testConfig({ maxRetries })
        const w = yield* world(cfg)
        yield* w.faults.failAlways(event.eventId)
        yield* w.publish(event)
        yield* w.run()
        const b = yield* w.broker.get
        const retries = retriesOf(b, event.eventId)
        expect(retries.map((r) => r.attempt)).toEqual(Array.from({ length: maxRetries }, (_, i) => i + 1))
        expect(retries.map((r) => r.delayMs)).toEqual(
          Array.from({ length: maxRetries }, (_, n) => Math.min(1000 * 2 ** n, 30_000))
        )
        expect(retries.map((r) => r.delayMs)).toEqual(retryDelays(cfg))
        // The copies carry the attempt in our header.
        expect(retries.map((r) => header(r.message, RETRY_HEADER))).toEqual(
          retries.map((r) => (r.attempt === 1 ? undefined : r.attempt - 1))
        )
        const dlq = dlqOf(b, event.eventId)
        expect(dlq).toHaveLength(1)
        expectFailedDlqEntry(dlq[0]!, event, cfg)
        expect(header(dlq[0]!, DLQ_HEADERS.reason)).toMatch(/Simulated failure/)
        expect(header(dlq[0]!, RETRY_HEADER)).toBe(maxRetries === 0 ? undefined : maxRetries)
        // Every attempt ran the handler 1 + IMMEDIATE_RETRIES times.
        const calls = yield* w.faults.callsOf(event.eventId)
        expect(calls.map((c) => c.attempt)).toEqual(Array.from({ length: maxRetries + 1 }, (_, a) => [a, a, a]).flat())
        expect(yield* w.store.claimsOf(event.eventId)).toEqual([])
        expect(yield* w.store.notificationsOf(event.eventId)).toEqual([])
        expectDrained(b)
        const totals = yield* w.metrics.totals
        expect({ retried: totals.retried, failed: totals.failed, processed: totals.processed }).toEqual({
          retried: maxRetries,
          failed: 1,
          processed: 0
        })
      })),
    { fastCheck: { numRuns: 25 } }
  )

  it.effect("(2) defaults: retries after 1000, 2000, 4000 ms, then the DLQ with attempts = 4", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(eventArb, { numRuns: 1, seed: 42 })[0]!
      const w = yield* world(testConfig())
      yield* w.faults.failAlways(event.eventId)
      yield* w.publish(event)
      yield* w.run()
      const b = yield* w.broker.get
      expect(retriesOf(b).map((r) => r.delayMs)).toEqual([1000, 2000, 4000])
      expect(b.dlq).toHaveLength(1)
      expect(b.dlq[0]!.headers).toMatchObject({
        [DLQ_HEADERS.kind]: "failed",
        [DLQ_HEADERS.attempts]: 4,
        [DLQ_HEADERS.routingKey]: event.event,
        [DLQ_HEADERS.queue]: queueFor(event.event),
        [DLQ_HEADERS.reason]: expect.stringMatching(/Simulated failure/)
      })
    })))

  it.effect("(2) MAX_RETRIES = 0: straight to the DLQ, never retried", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(eventArb, { numRuns: 1, seed: 7 })[0]!
      const w = yield* world(testConfig({ maxRetries: 0 }))
      yield* w.faults.failAlways(event.eventId)
      yield* w.publish(event)
      yield* w.run()
      const b = yield* w.broker.get
      expect(retriesOf(b)).toEqual([])
      expect(b.dlq).toHaveLength(1)
      expect(b.dlq[0]!.headers).toMatchObject({ [DLQ_HEADERS.kind]: "failed", [DLQ_HEADERS.attempts]: 1 })
      expect(opsOf(b, "ack")).toHaveLength(1)
    })))

  it.effect.prop("(2) an event failing its first n attempts (n <= MAX_RETRIES) is processed at attempt n, once", {
    event: eventArb,
    maxRetries: fc.integer({ min: 1, max: 5 }),
    n: fc.integer({ min: 1, max: 5 })
  }, ({ event, maxRetries, n: raw }) =>
    inWorld(Effect.gen(function*() {
      const n = Math.min(raw, maxRetries)
      const w = yield* world(testConfig({ maxRetries }))
      yield* w.faults.failFirstAttempts(event.eventId, n)
      yield* w.publish(event)
      yield* w.run()
      const b = yield* w.broker.get
      expect(retriesOf(b).map((r) => r.attempt)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
      yield* expectProcessedOnce(w, event)
      expectDrained(b)
    })), { fastCheck: { numRuns: 25 } })

  it.effect("(2) failures of the first checks are absorbed by the immediate retries: no broker retry", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 3 })[0]!
      const w = yield* world(testConfig())
      yield* w.faults.failFirstCalls(event.eventId, 2)
      yield* w.publish(event)
      yield* w.run()
      expect(retriesOf(yield* w.broker.get)).toEqual([])
      expect((yield* w.faults.callsOf(event.eventId)).map((c) => c.failed)).toEqual([true, true, false])
      yield* expectProcessedOnce(w, event)
    })))

  // -------------------------------------------------------------------------------------------
  // 3. Poison.
  // -------------------------------------------------------------------------------------------

  interface Poison {
    readonly body: Uint8Array
    readonly routingKey: string
    readonly reason: RegExp
    readonly headers: Readonly<Record<string, unknown>>
  }

  const text = (s: string) => encodeBody(s)
  const anyReason = /^(Body is not valid JSON|Body is not a JSON object|Unknown event type|Invalid )/
  const notJson = fc.string().filter((s) => {
    try {
      JSON.parse(s)
      return false
    } catch {
      return true
    }
  })
  const unknownName = fc.string().filter((s) => !(EVENT_NAMES as ReadonlyArray<string>).includes(s))
  /** A valid event with one field broken so that its Schema rejects it. */
  const breakEvent = (e: DomainEvent, how: number): unknown => {
    switch (how % 5) {
      case 0:
        return { ...e, eventId: "not-a-uuid" }
      case 1:
        return { event: e.event, eventId: e.eventId, occurredAt: e.occurredAt }
      case 2:
        return { ...e, occurredAt: "not a timestamp" }
      case 3:
        return { ...e, payload: { ...e.payload, id: 42 } }
      default:
        return { ...e, payload: null }
    }
  }
  const poisonArb: fc.Arbitrary<Poison> = fc.record({
    body: fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((body) => ({ body, reason: anyReason })),
      notJson.map((s) => ({ body: text(s), reason: /^Body is not valid JSON/ })),
      fc.jsonValue().filter((v) => typeof v !== "object" || v === null || Array.isArray(v)).map((v) => ({
        body: text(JSON.stringify(v)),
        reason: /^Body is not a JSON object/
      })),
      fc.tuple(eventArb, unknownName).map(([e, name]) => ({
        body: text(JSON.stringify({ ...e, event: name })),
        reason: /^Unknown event type/
      })),
      fc.tuple(eventArb, fc.nat()).map(([e, how]) => ({
        body: text(JSON.stringify(breakEvent(e, how))),
        reason: new RegExp(`^Invalid ${e.event.replace(".", "\\.")}: `)
      }))
    ),
    routingKey: fc.constantFrom(...EVENT_NAMES),
    // Poison is never retried, whatever its retry header says.
    headers: fc.oneof(fc.constant({}), fc.nat({ max: 10 }).map((n) => ({ [RETRY_HEADER]: n })))
  }).map(({ body, headers, routingKey }) => ({ ...body, headers, routingKey }))

  it.effect.prop(
    "(3) poison goes to the DLQ at once with a reason, is never retried nor claimed; the rest of the batch is processed",
    {
      // Poison and valid messages interleaved in one batch.
      mix: fc.tuple(eventsArb(0, 4), fc.array(poisonArb, { minLength: 1, maxLength: 4 })).chain(([valid, poison]) => {
        const all: ReadonlyArray<{ readonly poison: Poison } | { readonly event: DomainEvent }> = [
          ...poison.map((p) => ({ poison: p })),
          ...valid.map((e) => ({ event: e }))
        ]
        return fc.shuffledSubarray([...all], { minLength: all.length, maxLength: all.length }).map((order) => ({
          valid,
          poison,
          all: order
        }))
      })
    },
    ({ mix: { all, poison, valid } }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        const poisonIds = new Map<number, Poison>()
        for (const m of all) {
          if ("poison" in m) poisonIds.set(yield* w.broker.publishRaw(m.poison), m.poison)
          else yield* w.publish(m.event)
        }
        yield* w.run({ batchSizes: [all.length] })
        const b = yield* w.broker.get
        expect(b.dlq).toHaveLength(poison.length)
        for (const m of b.dlq) {
          const p = poisonIds.get(m.copyOf!)!
          expect(p).toBeDefined()
          expect(m.headers[DLQ_HEADERS.kind]).toBe("poison")
          expect(m.headers[DLQ_HEADERS.attempts]).toBe(1)
          expect(m.headers[DLQ_HEADERS.routingKey]).toBe(p.routingKey)
          expect(m.headers[DLQ_HEADERS.queue]).toBe(`${p.routingKey}.queue`)
          expect(m.headers[DLQ_HEADERS.reason]).toMatch(p.reason)
          expect(m.body).toEqual(p.body)
        }
        expect(retriesOf(b)).toEqual([])
        expect(b.ops.filter((o) => poisonIds.has(o.message.id)).map((o) => o.op).sort()).toEqual(
          [...Array<string>(poison.length).fill("ack"), ...Array<string>(poison.length).fill("deadLetter")].sort()
        )
        // Only valid events reached the handlers and the store.
        const checked = new Set((yield* w.faults.calls).map((c) => c.eventId))
        expect(checked).toEqual(new Set(valid.map((e) => e.eventId)))
        const st = yield* w.store.get
        expect([...st.claims.values()].map((c) => c.eventId).sort()).toEqual(valid.map((e) => e.eventId).sort())
        for (const e of valid) yield* expectProcessedOnce(w, e)
        expect((yield* w.metrics.totals).poison).toBe(poison.length)
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 40 } }
  )

  // -------------------------------------------------------------------------------------------
  // 4. Odd retry headers.
  // -------------------------------------------------------------------------------------------

  const oddHeaders: ReadonlyArray<readonly [string, Readonly<Record<string, unknown>>]> = [
    ["missing", {}],
    ["negative", { [RETRY_HEADER]: -3 }],
    ["negative seed", { [SEED_RETRY_HEADER]: -1 }],
    ["huge", { [RETRY_HEADER]: 1e9 }],
    ["huge seed string", { [SEED_RETRY_HEADER]: "123456789012" }],
    ["non-numeric", { [RETRY_HEADER]: "abc" }],
    ["non-numeric seed", { [SEED_RETRY_HEADER]: { nested: true } }],
    ["fraction", { [RETRY_HEADER]: 1.5 }],
    ["numeric string", { [SEED_RETRY_HEADER]: "2" }],
    ["both", { [RETRY_HEADER]: 1, [SEED_RETRY_HEADER]: 2 }],
    ["NaN", { [RETRY_HEADER]: Number.NaN }]
  ]

  it.effect.prop("(4) odd retry headers: a failing event spends exactly the retries left, a good one is processed", {
    headers: fc.constantFrom(...oddHeaders),
    events: eventsArb(2, 2),
    maxRetries: fc.integer({ min: 0, max: 4 })
  }, ({ events: [failing, good], headers: [, headers], maxRetries }) =>
    inWorld(Effect.gen(function*() {
      if (failing === undefined || good === undefined) return yield* Effect.dieMessage("two events expected")
      const cfg = testConfig({ maxRetries })
      const w = yield* world(cfg)
      yield* w.faults.failAlways(failing.eventId)
      yield* w.publish(failing, { headers })
      yield* w.publish(good, { headers })
      yield* w.run()
      const b = yield* w.broker.get
      const start = attemptOf(headers, maxRetries)
      const retries = retriesOf(b, failing.eventId)
      expect(retries.map((r) => r.attempt)).toEqual(Array.from({ length: maxRetries - start }, (_, i) => start + i + 1))
      // The seed's header is dropped from the retry copies: ours alone counts from then on.
      for (const r of b.retry) expect(r.message.headers[SEED_RETRY_HEADER]).toBeUndefined()
      const dlq = dlqOf(b, failing.eventId)
      expect(dlq).toHaveLength(1)
      expectFailedDlqEntry(dlq[0]!, failing, cfg)
      yield* expectProcessedOnce(w, good)
      expect(retriesOf(b, good.eventId)).toEqual([])
      expectDrained(b)
    })), { fastCheck: { numRuns: 40 } })

  // -------------------------------------------------------------------------------------------
  // 5. A rejected commit caused by one event.
  // -------------------------------------------------------------------------------------------

  it.effect.prop(
    "(5) a statement rejected because of one event: the batch is split, the others commit, the bad one is retried then dead-lettered",
    {
      events: eventsArb(2, 6),
      bad: fc.nat(),
      maxRetries: fc.integer({ min: 0, max: 3 })
    },
    ({ bad: rawBad, events, maxRetries }) =>
      inWorld(Effect.gen(function*() {
        const cfg = testConfig({ maxRetries })
        const w = yield* world(cfg)
        const bad = events[rawBad % events.length]!
        yield* w.store.rejectBatchesContaining(bad.eventId)
        for (const e of events) yield* w.publish(e)
        yield* w.run({ batchSizes: [events.length] })
        const b = yield* w.broker.get
        const st = yield* w.store.get
        // The first commit held the whole batch and was rejected; then every event was committed on its own.
        expect(st.commits[0]).toMatchObject({ outcome: "rejected", eventIds: events.map((e) => e.eventId) })
        for (const e of events) {
          if (e.eventId === bad.eventId) continue
          expect(st.commits.filter((c) => c.eventIds.length === 1 && c.eventIds[0] === e.eventId).map((c) => c.outcome))
            .toEqual(["committed"])
          yield* expectProcessedOnce(w, e)
        }
        // The bad one: immediate retries of its lone commit on every attempt, MAX_RETRIES broker retries, then the DLQ.
        const lone = st.commits.filter((c) => c.eventIds.length === 1 && c.eventIds[0] === bad.eventId)
        expect(lone).toHaveLength((maxRetries + 1) * (1 + IMMEDIATE_RETRIES))
        expect(lone.every((c) => c.outcome === "rejected")).toBe(true)
        expect(retriesOf(b, bad.eventId).map((r) => r.attempt)).toEqual(
          Array.from({ length: maxRetries }, (_, i) => i + 1)
        )
        expect(yield* w.store.claimsOf(bad.eventId)).toEqual([])
        const dlq = dlqOf(b, bad.eventId)
        expect(dlq).toHaveLength(1)
        expectFailedDlqEntry(dlq[0]!, bad, cfg)
        expect(dlq[0]!.headers[DLQ_HEADERS.reason]).toMatch(/^Commit failed/)
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 30 } }
  )

  // -------------------------------------------------------------------------------------------
  // 6. Cache invalidation.
  // -------------------------------------------------------------------------------------------

  const fillCache = (cache: Context.Tag.Service<typeof TicketListCache>, n: number) =>
    Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) => cache.lookup(`scope-${i}`, "status=open").pipe(Effect.flatMap((l) => l.store(`listing ${i}`))),
      { discard: true }
    )
  const cachedCount = (cache: Context.Tag.Service<typeof TicketListCache>, n: number) =>
    Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => cache.lookup(`scope-${i}`, "status=open")).pipe(
      Effect.map((ls) => ls.filter((l) => Option.isSome(l.hit)).length)
    )

  it.effect.prop("(6) a ticket event empties the cached listings (duplicates too); message.sent leaves them", {
    ticketEvent: ticketEventArb,
    message: messageSentArb,
    entries: fc.integer({ min: 1, max: 5 })
  }, ({ entries, message, ticketEvent }) =>
    inWorld(Effect.gen(function*() {
      const w = yield* world(testConfig())
      yield* fillCache(w.cache, entries)
      expect(yield* cachedCount(w.cache, entries)).toBe(entries)

      yield* w.publish(message)
      yield* w.run()
      yield* expectProcessedOnce(w, message)
      expect(yield* cachedCount(w.cache, entries)).toBe(entries)

      yield* w.publish(ticketEvent)
      yield* w.run()
      yield* expectProcessedOnce(w, ticketEvent)
      expect(yield* cachedCount(w.cache, entries)).toBe(0)

      // A redelivered duplicate invalidates again (the first run may have died before invalidating).
      yield* fillCache(w.cache, entries)
      yield* w.publish(ticketEvent)
      yield* w.run()
      expect(yield* cachedCount(w.cache, entries)).toBe(0)
      expect((yield* w.metrics.totals).duplicates).toBe(1)

      // A failed ticket event does not touch the cache.
      yield* fillCache(w.cache, entries)
      const failing = { ...ticketEvent, eventId: crypto.randomUUID() }
      yield* w.faults.failAlways(failing.eventId)
      yield* w.publish(failing)
      yield* w.publish({ ...message, eventId: crypto.randomUUID() })
      yield* w.run()
      expect(yield* cachedCount(w.cache, entries)).toBe(entries)
    })), { fastCheck: { numRuns: 25 } })

  const inFlakyRedisWorld = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(Effect.provide(Layer.merge(WorkerTestLayerWithFlakyRedis, quietLogs)))

  it.effect("(6) Redis down for a moment: the batch is held, then the listings are invalidated; no retry spent", () =>
    inFlakyRedisWorld(Effect.gen(function*() {
      const event = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 21 })[0]!
      const w = yield* world(testConfig())
      const redis = yield* ControllableCache
      yield* fillCache(w.cache, 3)
      yield* redis.failNextInvalidations(3)
      yield* w.publish(event)
      yield* w.run()
      expect(retriesOf(yield* w.broker.get)).toEqual([])
      expect(yield* redis.invalidations).toBe(1)
      expect(yield* cachedCount(w.cache, 3)).toBe(0)
      yield* expectProcessedOnce(w, event)
    })))

  it.effect("(6) Redis down beyond the hold: committed effects stay once; the retry is a duplicate that invalidates", () =>
    inFlakyRedisWorld(Effect.gen(function*() {
      const [ticket, message] = [
        fc.sample(ticketCreatedArb, { numRuns: 1, seed: 22 })[0]!,
        fc.sample(messageSentArb, { numRuns: 1, seed: 23 })[0]!
      ]
      const w = yield* world(testConfig())
      const redis = yield* ControllableCache
      yield* fillCache(w.cache, 3)
      yield* redis.failNextInvalidations(1_000_000)
      yield* w.publish(ticket)
      yield* w.publish(message)
      yield* driven(w.processBatch(yield* w.broker.take(2)))
      let b = yield* w.broker.get
      // Both were committed with their claims; the ticket event could not invalidate, so it goes round again
      // (today the whole batch does, message.sent included: see the report's note on `finish`).
      expect((yield* w.store.get).claims.size).toBe(2)
      expect(retriesOf(b, ticket.eventId).map((r) => r.attempt)).toEqual([1])
      expect(yield* cachedCount(w.cache, 3)).toBe(3)
      // Redis is back.
      yield* redis.failNextInvalidations(0)
      yield* w.run()
      b = yield* w.broker.get
      expect(yield* cachedCount(w.cache, 3)).toBe(0)
      yield* expectProcessedOnce(w, ticket)
      yield* expectProcessedOnce(w, message)
      const totals = yield* w.metrics.totals
      expect(totals.failed).toBe(0)
      expect(totals.duplicates).toBe(totals.retried)
      expect(b.dlq).toEqual([])
      expectDrained(b)
    })))

  // -------------------------------------------------------------------------------------------
  // 7. Unconfirmed retry / DLQ publishes.
  // -------------------------------------------------------------------------------------------

  it.effect.prop(
    "(7) an unconfirmed retry or DLQ publish never acks the original; it is requeued, comes back, and nothing is lost or doubled",
    {
      event: eventArb,
      maxRetries: fc.integer({ min: 1, max: 3 }),
      retryFailures: fc.integer({ min: 1, max: 3 }),
      dlqFailures: fc.integer({ min: 1, max: 2 })
    },
    ({ dlqFailures, event, maxRetries, retryFailures }) =>
      inWorld(Effect.gen(function*() {
        const cfg = testConfig({ maxRetries })
        const w = yield* world(cfg)
        yield* w.faults.failAlways(event.eventId)
        yield* w.broker.failNextRetryLater(retryFailures)
        yield* w.broker.failNextDeadLetter(dlqFailures)
        yield* w.publish(event)

        // The first attempt: the retry copy is not confirmed, so the original is not acked or copied;
        // after a pause it goes back to its queue (rather than holding a prefetch slot).
        const first = yield* w.broker.take(1)
        yield* driven(w.processBatch(first))
        let b = yield* w.broker.get
        expect([...b.deliveries.values()].map((d) => [d.status, d.publishFailed])).toEqual([["requeued", true]])
        expect(b.retry).toEqual([])
        expect(b.unacked.size).toBe(0)
        expect((yield* w.metrics.totals).retried).toBe(0)

        yield* w.run()
        b = yield* w.broker.get
        expect(opsOf(b, "retryLater-failed")).toHaveLength(retryFailures)
        expect(opsOf(b, "deadLetter-failed")).toHaveLength(dlqFailures)
        // Each unconfirmed copy sent the original back: requeued after the pause, or redelivered by a crash first.
        expect(opsOf(b, "requeue").length + b.crashes).toBe(retryFailures + dlqFailures)
        // Not doubled: one confirmed retry per attempt, one DLQ copy.
        expect(retriesOf(b).map((r) => r.attempt)).toEqual(Array.from({ length: maxRetries }, (_, i) => i + 1))
        expect(b.dlq).toHaveLength(1)
        expectFailedDlqEntry(b.dlq[0]!, event, cfg)
        expectDrained(b)
        const totals = yield* w.metrics.totals
        expect({ retried: totals.retried, failed: totals.failed }).toEqual({ retried: maxRetries, failed: 1 })
      })),
    { fastCheck: { numRuns: 25 } }
  )

  it.effect("(7) an unconfirmed DLQ publish of poison requeues it; it is dead-lettered once on redelivery", () =>
    inWorld(Effect.gen(function*() {
      const w = yield* world(testConfig())
      yield* w.broker.failNextDeadLetter(1)
      yield* w.broker.publishRaw({ body: text("{not json"), routingKey: "ticket.created" })
      const first = yield* w.broker.take(1)
      yield* driven(w.processBatch(first))
      let b = yield* w.broker.get
      expect(opsOf(b, "requeue")).toHaveLength(1)
      expect(b.dlq).toEqual([])
      yield* w.run()
      b = yield* w.broker.get
      expect(b.dlq).toHaveLength(1)
      expect(b.dlq[0]!.headers[DLQ_HEADERS.kind]).toBe("poison")
      expect(opsOf(b, "deadLetter").map((o) => o.message.redelivered)).toEqual([true])
      expectDrained(b)
    })))

  it.effect("(7) an unconfirmed retry of an event that later succeeds: processed once", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(messageSentArb, { numRuns: 1, seed: 11 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.setWatchers(event.payload.ticketId, [crypto.randomUUID()])
      yield* w.faults.failFirstAttempts(event.eventId, 1)
      yield* w.broker.failNextRetryLater(2)
      yield* w.publish(event)
      yield* w.run()
      const b = yield* w.broker.get
      expect(opsOf(b, "retryLater-failed")).toHaveLength(2)
      expect(retriesOf(b)).toHaveLength(1)
      yield* expectProcessedOnce(w, event, (yield* w.store.get).watchers)
      // One notification per channel (email and in-app) for the one watcher.
      expect((yield* w.store.notificationsOf(event.eventId)).map((n) => n.channel).sort()).toEqual(["email", "in_app"])
    })))

  // -------------------------------------------------------------------------------------------
  // 8. Watchers.
  // -------------------------------------------------------------------------------------------

  it.effect.prop("(8) message.sent notifies every watcher except the author, once per channel", {
    message: messageSentArb,
    watchers: fc.array(fc.uuid(), { maxLength: 6 }),
    authorWatches: fc.boolean(),
    duplicated: fc.boolean(),
    known: fc.boolean()
  }, ({ authorWatches, duplicated, known, message, watchers }) =>
    inWorld(Effect.gen(function*() {
      const w = yield* world(testConfig())
      const list = [...watchers, ...(duplicated ? watchers : []), ...(authorWatches ? [message.payload.authorId] : [])]
      if (known) yield* w.store.setWatchers(message.payload.ticketId, list)
      yield* w.publish(message)
      yield* w.run()
      const notes = yield* w.store.notificationsOf(message.eventId)
      const expected = known ? [...new Set(watchers)].filter((id) => id !== message.payload.authorId) : []
      for (const channel of ["in_app", "email"] as const) {
        expect(notes.filter((n) => n.channel === channel).map((n) => n.recipientId)).toEqual(expected)
      }
      expect(notes).toHaveLength(expected.length * 2)
      for (const n of notes) {
        expect(n).toMatchObject({ eventId: message.eventId, eventType: "message.sent" })
      }
      expect(notes.some((n) => n.recipientId === message.payload.authorId)).toBe(false)
      expect(yield* w.store.claimsOf(message.eventId)).toHaveLength(1)
      expect((yield* w.store.get).watcherLookups).toBe(1)
    })), { fastCheck: { numRuns: 30 } })

  // -------------------------------------------------------------------------------------------
  // 9. Events the worker must not act on: about nothing, or on another event's queue.
  // -------------------------------------------------------------------------------------------

  const expectRejected = (m: BrokerMessage, event: DomainEvent, kind: string, reason: RegExp) => {
    expect(m.headers[DLQ_HEADERS.kind]).toBe(kind)
    expect(m.headers[DLQ_HEADERS.attempts]).toBe(1)
    expect(String(m.headers[DLQ_HEADERS.reason])).toMatch(reason)
    expect(bodyEvent(m)).toEqual(event)
  }

  it.effect.prop(
    "(9) an event about a ticket or message that does not exist is dead-lettered at once as invalid, with no effect; the rest of the batch is processed",
    { events: eventsArb(2, 6), pick: fc.nat() },
    ({ events, pick }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        const ghost = events[pick % events.length]!
        for (const e of events) yield* e === ghost ? w.broker.publishEvent(e) : w.publish(e)
        yield* w.run({ batchSizes: [events.length] })
        const b = yield* w.broker.get
        const dead = dlqOf(b, ghost.eventId)
        expect(dead).toHaveLength(1)
        expectRejected(dead[0]!, ghost, "invalid", /^Invalid .*: (ticket|message) .* does not exist$/)
        expect(yield* w.store.claimsOf(ghost.eventId)).toEqual([])
        expect(yield* w.store.notificationsOf(ghost.eventId)).toEqual([])
        expect(retriesOf(b)).toEqual([])
        for (const e of events) if (e !== ghost) yield* expectProcessedOnce(w, e)
        expect((yield* w.metrics.totals).invalid).toBe(1)
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 30 } }
  )

  it.effect("(9) the entity must be the event's: a ticket with another owner, a message by another author or on another ticket", () =>
    inWorld(Effect.gen(function*() {
      const w = yield* world(testConfig())
      const ticket = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 31 })[0]!
      const message = fc.sample(messageSentArb, { numRuns: 1, seed: 32 })[0]!
      yield* w.store.addEntitiesOf([ticket, message])
      const stolen = {
        ...ticket,
        eventId: crypto.randomUUID(),
        payload: { ...ticket.payload, ownerId: crypto.randomUUID() }
      }
      const impostor = {
        ...message,
        eventId: crypto.randomUUID(),
        payload: { ...message.payload, authorId: crypto.randomUUID() }
      }
      const elsewhere = {
        ...message,
        eventId: crypto.randomUUID(),
        payload: { ...message.payload, ticketId: crypto.randomUUID() }
      }
      for (const e of [stolen, impostor, elsewhere]) yield* w.broker.publishEvent(e)
      yield* w.run({ batchSizes: [3] })
      const b = yield* w.broker.get
      expectRejected(dlqOf(b, stolen.eventId)[0]!, stolen, "invalid", /ticket .* owned by .* does not exist/)
      expectRejected(dlqOf(b, impostor.eventId)[0]!, impostor, "invalid", /message .* does not exist/)
      expectRejected(dlqOf(b, elsewhere.eventId)[0]!, elsewhere, "invalid", /message .* does not exist/)
      expect((yield* w.store.get).claims.size).toBe(0)
      expect((yield* w.store.get).notifications).toEqual([])
    })))

  it.effect.prop(
    "(9) an event on another event's queue is dead-lettered at once as invalid (misrouted), even when its entity exists",
    { event: eventArb, other: fc.constantFrom(...EVENT_NAMES) },
    ({ event, other }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        const queue = other === event.event ? otherQueue(event) : queueFor(other)
        yield* w.publish(event, { queue })
        yield* w.run()
        const b = yield* w.broker.get
        expect(b.dlq).toHaveLength(1)
        expectRejected(
          b.dlq[0]!,
          event,
          "invalid",
          new RegExp(`^Misrouted: a ${event.event} event arrived on ${queue}`)
        )
        expect(b.dlq[0]!.headers[DLQ_HEADERS.queue]).toBe(queue)
        expect(yield* w.faults.calls).toEqual([])
        expect((yield* w.store.get).commits).toEqual([])
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 20 } }
  )

  // -------------------------------------------------------------------------------------------
  // 10. Idempotency an attacker cannot get round: letter case, reused ids.
  // -------------------------------------------------------------------------------------------

  /** Each letter of the id in upper or lower case, as `cases` says (cycled). */
  const recase = (id: string, cases: ReadonlyArray<boolean>) =>
    [...id].map((c, i) => (cases[i % cases.length] ? c.toUpperCase() : c)).join("")

  it.effect.prop(
    "(10) the same eventId in any letter case is one event: one claim, one effect, the other copies duplicates",
    {
      event: eventArb,
      copies: fc.array(fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }),
      oneBatch: fc.boolean()
    },
    ({ copies, event, oneBatch }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        yield* w.publish(event)
        if (!oneBatch) yield* w.run()
        for (const cases of copies) {
          yield* w.publish(event, { eventId: recase(event.eventId, cases) })
          if (!oneBatch) yield* w.run()
        }
        yield* w.run({ batchSizes: [copies.length + 1] })
        yield* expectProcessedOnce(w, event)
        const totals = yield* w.metrics.totals
        expect({ processed: totals.processed, duplicates: totals.duplicates }).toEqual({
          processed: 1,
          duplicates: copies.length
        })
        expectDrained(yield* w.broker.get)
      })),
    { fastCheck: { numRuns: 30 } }
  )

  /** The event with one field changed that names no entity: another payload under the same id. */
  const forge = (event: DomainEvent): DomainEvent => {
    switch (event.event) {
      case "ticket.created":
        return { ...event, payload: { ...event.payload, title: `${event.payload.title} (forged)` } }
      case "ticket.updated":
        return { ...event, payload: { ...event.payload, changedFields: [...event.payload.changedFields, "title"] } }
      case "ticket.status_changed":
        return { ...event, payload: { ...event.payload, changedAt: "1999-01-01T00:00:00.000Z" } }
      case "message.sent":
        return { ...event, payload: { ...event.payload, content: `${event.payload.content} (forged)` } }
    }
  }

  it.effect.prop(
    "(10) a reused eventId with another payload is dead-lettered as a conflict with both fingerprints, and has no effect; an exact copy is a duplicate",
    { event: eventArb, oneBatch: fc.boolean() },
    ({ event, oneBatch }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        const forged = forge(event)
        expect(eventFingerprint(forged)).not.toBe(eventFingerprint(event))
        yield* w.publish(event)
        if (!oneBatch) yield* w.run()
        yield* w.publish(forged)
        yield* w.run({ batchSizes: [2] })
        let b = yield* w.broker.get
        const dead = dlqOf(b, event.eventId)
        expect(dead).toHaveLength(1)
        expectRejected(
          dead[0]!,
          forged,
          "conflict",
          oneBatch ?
            /^Conflict: eventId .* is already in this batch with another payload$/ :
            /^Conflict: eventId .* was already processed with another payload$/
        )
        expect(dead[0]!.headers[DLQ_HEADERS.fingerprint]).toBe(eventFingerprint(forged))
        expect(dead[0]!.headers[DLQ_HEADERS.claimedFingerprint]).toBe(eventFingerprint(event))
        // The first use kept its claim and its effects, once.
        expect(yield* w.store.claimsOf(event.eventId)).toEqual([claimOf(event)])
        expect(yield* w.store.notificationsOf(event.eventId)).toEqual(plan(event, new Map()).notifications)
        expect((yield* w.metrics.totals).conflicts).toBe(1)

        // The very same event again (a redelivery, say; only the envelope's time differs): a duplicate.
        yield* w.publish({ ...event, occurredAt: new Date(0).toISOString() })
        yield* w.run()
        b = yield* w.broker.get
        expect(dlqOf(b, event.eventId)).toHaveLength(1)
        expect((yield* w.metrics.totals).duplicates).toBe(1)
        expect(yield* w.store.claimsOf(event.eventId)).toEqual([claimOf(event)])
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 30 } }
  )

  it.effect.prop(
    "(10) an id claimed before fingerprints were stored: any copy is a duplicate, as before",
    { event: eventArb },
    ({ event }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig())
        yield* w.store.claimAs(event.eventId, event.event, null)
        yield* w.publish(forge(event))
        yield* w.run()
        const b = yield* w.broker.get
        expect(b.dlq).toEqual([])
        expect(yield* w.store.notificationsOf(event.eventId)).toEqual([])
        expect((yield* w.metrics.totals).duplicates).toBe(1)
      })),
    { fastCheck: { numRuns: 10 } }
  )

  // -------------------------------------------------------------------------------------------
  // 11. Copies that cannot be encoded.
  // -------------------------------------------------------------------------------------------

  /** A header table amqplib would publish, but not with the ~100 bytes a copy adds. */
  const BIG = { "x-big": "a".repeat(65_500), "x-small": "kept" }

  it.effect("(11) poison whose DLQ copy cannot be encoded goes to the DLQ once, trimmed and saying so; never back to its queue", () =>
    inWorld(Effect.gen(function*() {
      const w = yield* world(testConfig())
      yield* w.broker.publishRaw({ body: text("{not json"), routingKey: "message.sent", headers: BIG })
      yield* w.run()
      const b = yield* w.broker.get
      expect(b.dlq).toHaveLength(1)
      const h = b.dlq[0]!.headers
      expect(h[DLQ_HEADERS.kind]).toBe("poison")
      expect(String(h[DLQ_HEADERS.reason])).toMatch(/^Body is not valid JSON.*; headers dropped to copy it: "x-big"/)
      expect(h["x-big"]).toBeUndefined()
      expect(h["x-small"]).toBe("kept")
      expect(opsOf(b, "requeue")).toEqual([])
      expect(opsOf(b, "ack")).toHaveLength(1)
      expectDrained(b)
    })))

  it.effect.prop(
    "(11) a failing event whose retry copy cannot be encoded goes to the DLQ as poison at once; at its last attempt, trimmed as failed",
    { event: eventArb, maxRetries: fc.integer({ min: 0, max: 3 }) },
    ({ event, maxRetries }) =>
      inWorld(Effect.gen(function*() {
        const w = yield* world(testConfig({ maxRetries }))
        yield* w.faults.failAlways(event.eventId)
        yield* w.publish(event, { headers: BIG })
        yield* w.run()
        const b = yield* w.broker.get
        const dead = dlqOf(b, event.eventId)
        expect(dead).toHaveLength(1)
        const h = dead[0]!.headers
        expect(h[DLQ_HEADERS.kind]).toBe(maxRetries === 0 ? "failed" : "poison")
        expect(String(h[DLQ_HEADERS.reason])).toMatch(
          maxRetries === 0
            ? /^Simulated failure.*; headers dropped to copy it/
            : /^Cannot be retried: its retry copy cannot be encoded/
        )
        expect(String(h[DLQ_HEADERS.reason])).toMatch(/"x-big"/)
        expect(h["x-big"]).toBeUndefined()
        expect(h[DLQ_HEADERS.attempts]).toBe(1)
        expect(opsOf(b, "retryLater-unencodable")).toHaveLength(maxRetries === 0 ? 0 : 1)
        expect(retriesOf(b)).toEqual([])
        expect(opsOf(b, "requeue")).toEqual([])
        expect(yield* w.store.claimsOf(event.eventId)).toEqual([])
        const totals = yield* w.metrics.totals
        expect({ poison: totals.poison, failed: totals.failed, retried: totals.retried }).toEqual(
          maxRetries === 0 ? { poison: 0, failed: 1, retried: 0 } : { poison: 1, failed: 0, retried: 0 }
        )
        expectDrained(b)
      })),
    { fastCheck: { numRuns: 10 } }
  )

  // -------------------------------------------------------------------------------------------
  // Single scenarios, each named.
  // -------------------------------------------------------------------------------------------

  it.effect("database unreachable: the batch is held and retried without spending a retry", () =>
    inWorld(Effect.gen(function*() {
      const events = fc.sample(eventsArb(3, 3), { numRuns: 1, seed: 5 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.failNextCommits(3)
      for (const e of events) yield* w.publish(e)
      yield* w.run({ batchSizes: [3] })
      const st = yield* w.store.get
      expect(st.commits.map((c) => c.outcome)).toEqual(["transient", "transient", "transient", "committed"])
      expect(retriesOf(yield* w.broker.get)).toEqual([])
      expect((yield* w.faults.calls).map((c) => c.attempt)).toEqual([0, 0, 0])
      for (const e of events) yield* expectProcessedOnce(w, e, st.watchers)
    })))

  it.effect("an outage longer than the hold: the events go to the broker's retry (no effect, nothing lost), then are processed once", () =>
    inWorld(Effect.gen(function*() {
      const events = fc.sample(eventsArb(3, 3), { numRuns: 1, seed: 16 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.failNextCommits(1_000_000)
      for (const e of events) yield* w.publish(e)
      const first = yield* w.broker.take(3)
      yield* driven(w.processBatch(first))
      let b = yield* w.broker.get
      expect(retriesOf(b).map((r) => r.attempt)).toEqual([1, 1, 1])
      expect(opsOf(b, "ack")).toHaveLength(3)
      expect((yield* w.store.get).claims.size).toBe(0)
      // The database is back.
      yield* w.store.failNextCommits(-(yield* w.store.get).transientCommits)
      yield* w.run()
      b = yield* w.broker.get
      for (const e of events) yield* expectProcessedOnce(w, e)
      expectDrained(b)
    })))

  it.effect("interrupted while holding through an outage (shutdown): nothing settled, nothing written; redelivered and processed once", () =>
    inWorld(Effect.gen(function*() {
      const events = fc.sample(eventsArb(2, 2), { numRuns: 1, seed: 17 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.failNextCommits(1_000_000)
      for (const e of events) yield* w.publish(e)
      const batch = yield* w.broker.take(2)
      const fiber = yield* Effect.fork(withTestClock(w.processBatch(batch)))
      yield* TestClock.adjust("30 seconds")
      expect((yield* w.store.get).commits.length).toBeGreaterThan(1)
      yield* Fiber.interrupt(fiber)
      let b = yield* w.broker.get
      expect(b.ops.filter((o) => o.op === "ack" || o.op === "retryLater" || o.op === "deadLetter")).toEqual([])
      expect((yield* w.store.get).claims.size).toBe(0)
      yield* w.store.failNextCommits(-(yield* w.store.get).transientCommits)
      yield* w.run()
      b = yield* w.broker.get
      for (const e of events) yield* expectProcessedOnce(w, e)
      expectDrained(b)
    })))

  it.effect("a commit that applied but whose response was lost: the retry finds duplicates, effects once", () =>
    inWorld(Effect.gen(function*() {
      const events = fc.sample(eventsArb(2, 2), { numRuns: 1, seed: 6 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.loseNextCommitResponses(1)
      for (const e of events) yield* w.publish(e)
      yield* w.run({ batchSizes: [2] })
      expect((yield* w.store.get).commits.map((c) => c.outcome)).toEqual(["lost-response", "committed"])
      for (const e of events) yield* expectProcessedOnce(w, e)
      const totals = yield* w.metrics.totals
      expect({ processed: totals.processed, duplicates: totals.duplicates }).toEqual({ processed: 0, duplicates: 2 })
    })))

  it.effect("a crash after the commit, before the ack: the redelivery is a duplicate, acked without effects", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 8 })[0]!
      const w = yield* world(testConfig())
      yield* w.broker.loseNextAcks(1)
      yield* w.publish(event)
      const report = yield* w.run()
      expect(report.crashes).toBe(1)
      const b = yield* w.broker.get
      expect(b.deliveries.size).toBe(2)
      expect([...b.deliveries.values()].map((d) => [d.status, d.message.redelivered])).toEqual([["ack-lost", false], [
        "acked",
        true
      ]])
      yield* expectProcessedOnce(w, event)
      const totals = yield* w.metrics.totals
      expect({ processed: totals.processed, duplicates: totals.duplicates }).toEqual({ processed: 1, duplicates: 1 })
    })))

  it.effect("the same event twice in one batch: the first copy runs, the second is acked as a duplicate", () =>
    inWorld(Effect.gen(function*() {
      const event = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 9 })[0]!
      const w = yield* world(testConfig())
      yield* w.publish(event)
      yield* w.publish(event)
      yield* w.run({ batchSizes: [2] })
      const b = yield* w.broker.get
      expect(opsOf(b, "ack")).toHaveLength(2)
      expect(yield* w.faults.calls).toHaveLength(1)
      expect((yield* w.store.get).commits).toHaveLength(1)
      yield* expectProcessedOnce(w, event)
      expect((yield* w.metrics.totals).duplicates).toBe(1)
    })))

  it.effect("watchers unreachable for a while: held, then message.sent is processed", () =>
    inWorld(Effect.gen(function*() {
      const message = fc.sample(messageSentArb, { numRuns: 1, seed: 12 })[0]!
      const w = yield* world(testConfig())
      const watcher = crypto.randomUUID()
      yield* w.store.setWatchers(message.payload.ticketId, [watcher])
      yield* w.store.failNextWatcherLookups(2, { transient: true })
      yield* w.publish(message)
      yield* w.run()
      expect(retriesOf(yield* w.broker.get)).toEqual([])
      const notes = yield* w.store.notificationsOf(message.eventId)
      expect(notes.filter((n) => n.channel === "in_app").map((n) => n.recipientId)).toEqual([watcher])
    })))

  it.effect("watcher lookup rejected: message.sent is retried later, ticket events of the batch go through", () =>
    inWorld(Effect.gen(function*() {
      const message = fc.sample(messageSentArb, { numRuns: 1, seed: 13 })[0]!
      const ticket = fc.sample(ticketCreatedArb, { numRuns: 1, seed: 14 })[0]!
      const w = yield* world(testConfig())
      yield* w.store.failNextWatcherLookups(1, { transient: false })
      yield* w.publish(message)
      yield* w.publish(ticket)
      const first = yield* w.broker.take(2)
      yield* driven(w.processBatch(first))
      let b = yield* w.broker.get
      expect(retriesOf(b).map((r) => [eventIdOf(r.message), r.attempt])).toEqual([[message.eventId, 1]])
      yield* expectProcessedOnce(w, ticket)
      yield* w.run()
      b = yield* w.broker.get
      yield* expectProcessedOnce(w, message)
      expectDrained(b)
    })))

  it.effect("a defect in a handler requeues the batch; deliveries already settled stay settled", () =>
    inWorld(Effect.gen(function*() {
      const [good, buggy] = fc.sample(eventsArb(2, 2), { numRuns: 1, seed: 15 })[0]!
      const w = yield* world(testConfig())
      yield* w.faults.dieOn(buggy!.eventId)
      yield* w.broker.publishRaw({ body: text("garbage"), routingKey: "ticket.updated" })
      yield* w.publish(good!)
      yield* w.publish(buggy!)
      const batch = yield* w.broker.take(3)
      yield* driven(w.processBatch(batch))
      const b = yield* w.broker.get
      // The poison was dead-lettered and acked before the defect; its requeue is a no-op.
      expect(b.dlq).toHaveLength(1)
      expect([...b.deliveries.values()].map((d) => d.status)).toEqual(["acked", "requeued", "requeued"])
      expect(b.ready.map((m) => eventIdOf(m))).toEqual([buggy!.eventId, good!.eventId])
      expect((yield* w.store.get).commits).toEqual([])
    })))
})
