/**
 * The heart of the worker: takes a batch of deliveries and settles every one
 * of them, each with its own outcome. `processBatch` runs these steps, top to
 * bottom:
 *
 *  decode  A body that is not JSON or fails its Schema is poison: it goes to
 *          the DLQ at once, with the reason in its headers, never retried.
 *          So does (as `invalid`) an event on another event's queue. The
 *          first copy of an event in the batch is the one that runs; a later
 *          one with another payload under the same id is a `conflict`.
 *  plan    The watchers of the batch's tickets, the fault check, then the pure
 *          `plan` of each event (Handlers.ts). An event that stumbles gets
 *          tier-1 retries (quick, in-process) alongside the commit.
 *  commit  All plans in one statement: claims in `processed_events` plus
 *          notification rows (EventStore.ts), for the events whose entity
 *          exists. Those whose entity does not are `invalid`, those whose id
 *          was claimed with another payload a `conflict`: both go to the DLQ
 *          at once, never retried, with no effect. Other unclaimed events are
 *          duplicates. Database unreachable: hold and retry (no retry is
 *          spent). Statement rejected: split the batch and commit one by one,
 *          so one bad event cannot hold back the rest.
 *  settle  Invalidate cached listings once if any ticket event was in the
 *          batch (duplicates too: the first try may have died before this),
 *          ack, then log the seed's lines and count.
 *  fail    Tier 2, a broker-held delayed retry, up to MAX_RETRIES; then the
 *          DLQ with the error, the attempts and the original routing key. The
 *          copy is confirmed by the broker before the original is acked; if it
 *          cannot be, the original is not acked and goes back to its queue. A
 *          retry copy that cannot be encoded at all (headers too large) goes to
 *          the DLQ instead, as poison: going back to its queue would loop.
 *
 * A batch that fails as a whole (a defect: a bug outside the handlers, not an
 * event's own failure) is requeued, and so is one whose worker dies. Before
 * that, `guard` counts the redeliveries of such messages (CrashCounter.ts,
 * only for deliveries flagged `redelivered`): one redelivered once runs with
 * the others; one redelivered again is a suspect and runs in a batch of its
 * own, so it no longer takes its neighbours down; one redelivered
 * CRASH_LOOP_LIMIT times goes to the DLQ as `crash-loop`, unprocessed, with
 * the last failure seen.
 */
import {
  Cause,
  Clock,
  type Context,
  Effect,
  Either,
  Exit,
  FiberRef,
  LogLevel,
  Option,
  Schedule,
  type Tracer
} from "effect"
import { decodeDelivery, type Delivery, type UnencodableCopy } from "../Broker/Delivery.js"
import { attemptOf, type Fingerprints } from "../Broker/Headers.js"
import { queueFor, retryDelays } from "../Broker/Topology.js"
import { CrashLoopLimit, type WorkerConfig } from "../Config.js"
import { type DomainEvent, eventFingerprint, isTicketEvent } from "../Domain/Events.js"
import { clip } from "../Kit/Text.js"
import { type RateLimitedWarning, rateLimitedWarning } from "../Kit/Warnings.js"
import { parentFromHeaders } from "../Observability/TraceContext.js"
import { TicketListCache } from "../Tickets/ListCache.js"
import { CrashCounter, type CrashCounterService, messageKey } from "./CrashCounter.js"
import { type CommitResult, EventStore, type StoreError } from "./EventStore.js"
import { Faults, type HandlerError } from "./Faults.js"
import { describeRequirement, type Plan, plan, type Watchers } from "./Handlers.js"
import { type Timing, WorkerMetrics } from "./Metrics.js"
import * as RetryPolicy from "./RetryPolicy.js"

export type ProcessBatch = (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void>

/** What every step works with: the configuration, the services, and the policies derived from them. */
export interface Env {
  readonly cfg: WorkerConfig
  readonly store: Context.Tag.Service<typeof EventStore>
  readonly cache: Context.Tag.Service<typeof TicketListCache>
  readonly faults: Context.Tag.Service<typeof Faults>
  readonly metrics: Context.Tag.Service<typeof WorkerMetrics>
  /** Tier 2: the broker-held delay before retry n+1, as declared in the topology. */
  readonly delays: ReadonlyArray<number>
  /** Tier 1. */
  readonly immediate: Schedule.Schedule<unknown, unknown>
  /** One warning for every hold (PostgreSQL or Redis away), at most every 5 s. */
  readonly holding: RateLimitedWarning
  /** Redeliveries of unsettled messages, and the limit beyond which they are a crash loop. */
  readonly crashes: CrashCounterService
  readonly crashLoopLimit: number
}

export const makeEnv = (cfg: WorkerConfig, options: { readonly crashLoopLimit?: number } = {}) =>
  Effect.gen(function*() {
    const env: Env = {
      cfg,
      crashes: yield* CrashCounter,
      // Read at start-up by the worker (a bad value fails it there); tests take the default.
      crashLoopLimit: options.crashLoopLimit ?? (yield* Effect.orDie(CrashLoopLimit)),
      store: yield* EventStore,
      cache: yield* TicketListCache,
      faults: yield* Faults,
      metrics: yield* WorkerMetrics,
      delays: retryDelays(cfg),
      immediate: RetryPolicy.immediate(cfg),
      holding: rateLimitedWarning()
    }
    return env
  })

export interface Item {
  readonly delivery: Delivery
  readonly event: DomainEvent
  /** Retries already made (from the retry header). */
  readonly attempt: number
  /**
   * `Worker.handle <event>`, a child of the relay's publish span (from the AMQP `traceparent`).
   * Only when the tracer is on: off (the default), a span per event would be pure cost.
   */
  readonly span: Tracer.Span | undefined
}

export interface Planned extends Item {
  readonly plan: Plan
}

// ---------------------------------------------------------------------------------------------
// The batch
// ---------------------------------------------------------------------------------------------

export const processBatch = (env: Env): ProcessBatch => (deliveries) =>
  deliveries.some((d) => d.redelivered === true) ? guard(env, deliveries) : Effect.asVoid(runBatch(env, deliveries))

/** The steps, for one batch. Succeeds with false if the batch failed as a whole and was requeued. */
const runBatch = (env: Env, deliveries: ReadonlyArray<Delivery>): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const decoded = yield* withItemSpans(decode(deliveries, env.cfg.maxRetries))
    yield* Effect.forEach(decoded.poison, (poison) => deadLetterPoison(env, poison), { discard: true })
    yield* Effect.forEach(decoded.rejected, (rejected) => deadLetterRejected(env, rejected), { discard: true })
    const plans = yield* planBatch(env, decoded.items)
    yield* Effect.forEach(plans.unplanned, ({ error, item }) => fail(env, item, error), { discard: true })
    // The planned events commit while the stumbled ones take their tier-1 retries: neither waits for the other.
    yield* Effect.all([
      plans.planned.length > 0 ? commit(env, plans.planned, startedAt) : Effect.void,
      retryStumbled(env, plans, decoded.items.length, startedAt)
    ], { concurrency: "unbounded", discard: true })
    yield* settleCopies(env, decoded.copies, deliveries.length)
    return true
  }).pipe(
    // A bug must not strand messages in the prefetch window: give them back. Their redeliveries are
    // counted (see `guard`); the cause is kept for the DLQ reason should one of them loop.
    Effect.catchAllCause((cause) =>
      Effect.logError("Unexpected failure while processing a batch; requeueing it", cause).pipe(
        Effect.zipRight(
          env.crashes.failed(deliveries.map(messageKey), describeCause(cause)).pipe(
            Effect.catchAll((e) => Effect.logWarning(`Could not record the batch failure: ${e.message}`))
          )
        ),
        Effect.zipRight(Effect.forEach(deliveries, (d) => d.requeue, { discard: true })),
        Effect.as(false)
      )
    )
  )

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const squashed = Cause.squash(cause)
  return clip(squashed instanceof Error ? `${squashed.name}: ${squashed.message}` : String(squashed), 1000)
}

/**
 * A batch with redelivered messages: count their redeliveries, dead-letter the
 * crash loops, run the suspects one by one and the rest together, and forget
 * the counts of those settled. If the count cannot be written (PostgreSQL
 * away), every redelivered message runs on its own: isolated, never
 * dead-lettered for it.
 */
const guard = (env: Env, deliveries: ReadonlyArray<Delivery>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const redelivered = deliveries.filter((d) => d.redelivered === true)
    const counted = yield* Effect.either(env.crashes.redelivered(redelivered.map(messageKey)))
    if (Either.isLeft(counted)) {
      yield* env.holding.warn(`Cannot count redeliveries (${counted.left.message}); running them one by one`)
    }
    const attempts = (d: Delivery) =>
      Either.isRight(counted) ? counted.right.get(messageKey(d)) : { deliveries: SUSPECT_AFTER, lastError: null }
    const together: Array<Delivery> = deliveries.filter((d) => d.redelivered !== true)
    const alone: Array<Delivery> = []
    for (const d of redelivered) {
      const n = attempts(d)?.deliveries ?? 1
      if (Either.isRight(counted) && n >= env.crashLoopLimit) {
        yield* deadLetterCrashLoop(env, d, n, attempts(d)?.lastError ?? null)
      } else if (n >= SUSPECT_AFTER) alone.push(d)
      else together.push(d)
    }
    const settled = (batch: ReadonlyArray<Delivery>) =>
      Effect.flatMap(runBatch(env, batch), (ok) => {
        const keys = batch.filter((d) => d.redelivered === true).map(messageKey)
        return ok && keys.length > 0 && Either.isRight(counted)
          ? Effect.catchAll(
            env.crashes.settled(keys),
            (e) => Effect.logWarning(`Could not clear redelivery counts: ${e.message}`)
          )
          : Effect.void
      })
    // Side by side: a suspect that hangs (or takes the worker down) holds up nothing else of the batch.
    yield* Effect.all([
      together.length > 0 ? settled(together) : Effect.void,
      Effect.forEach(alone, (d) => settled([d]), { concurrency: "unbounded", discard: true })
    ], { concurrency: "unbounded", discard: true })
  })

/** A message redelivered this often (without being settled) runs in a batch of its own. */
const SUSPECT_AFTER = 2

/** A crash loop: to the DLQ unprocessed, with why; acked once the copy is confirmed. */
const deadLetterCrashLoop = (env: Env, delivery: Delivery, deliveries: number, lastError: string | null) => {
  const reason = `Crash loop: delivered ${deliveries + 1} times; the ${deliveries} before this one ended ` +
    `without settling it (its batch failed as a whole, or the worker stopped while processing it)` +
    (lastError === null ? "" : `; last failure: ${lastError}`)
  return Effect.logError(
    `🔁 Crash loop on ${delivery.queue} (messageId: ${delivery.messageId ?? "none"}), sending to DLQ: ${reason}`
  ).pipe(
    Effect.zipRight(delivery.deadLetter({ kind: "crash-loop", reason, attempts: deliveries + 1 })),
    Effect.zipRight(delivery.ack),
    Effect.zipRight(env.metrics.record("crashLoops", delivery.routingKey)),
    Effect.zipRight(
      Effect.catchAll(
        env.crashes.settled([messageKey(delivery)]),
        (e) => Effect.logWarning(`Could not clear a redelivery count: ${e.message}`)
      )
    ),
    Effect.catchTag("BrokerError", requeueAfterPause(delivery, "dead-letter a crash loop"))
  )
}

export const makeProcessor = (cfg: WorkerConfig, options: { readonly crashLoopLimit?: number } = {}) =>
  Effect.map(makeEnv(cfg, options), processBatch)

// ---------------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------------

/** A decoded event the worker will not act on: dead-lettered at once, never retried. */
export interface Rejected {
  readonly item: Item
  readonly kind: "invalid" | "conflict"
  readonly reason: string
  readonly fingerprints?: Fingerprints | undefined
}

export interface Decoded {
  readonly poison: ReadonlyArray<{ readonly delivery: Delivery; readonly reason: string }>
  /** The first copy of each event in the batch: the ones that run. */
  readonly items: ReadonlyArray<Item>
  /** Later copies of an event already in `items`: settled as duplicates once the first is through. */
  readonly copies: ReadonlyArray<Item>
  /** Events on another event's queue, and later uses of an id in `items` with another payload. */
  readonly rejected: ReadonlyArray<Rejected>
}

export const decode = (deliveries: ReadonlyArray<Delivery>, maxRetries: number): Decoded => {
  const poison: Array<{ readonly delivery: Delivery; readonly reason: string }> = []
  const items: Array<Item> = []
  const copies: Array<Item> = []
  const rejected: Array<Rejected> = []
  const seen = new Map<string, Item>()
  for (const delivery of deliveries) {
    const decoded = decodeDelivery(delivery)
    if (Either.isLeft(decoded)) {
      poison.push({ delivery, reason: decoded.left })
      continue
    }
    const item: Item = {
      delivery,
      event: decoded.right,
      attempt: attemptOf(delivery.headers, maxRetries),
      span: undefined
    }
    const home = queueFor(item.event.event)
    if (delivery.queue !== home) {
      rejected.push({
        item,
        kind: "invalid",
        reason: `Misrouted: a ${item.event.event} event arrived on ${delivery.queue} (its queue is ${home})`
      })
      continue
    }
    const first = seen.get(item.event.eventId)
    if (first === undefined) {
      seen.set(item.event.eventId, item)
      items.push(item)
      continue
    }
    // Fingerprints only for ids seen twice in a batch (rare): the commit computes the others'.
    const [claimed, received] = [eventFingerprint(first.event), eventFingerprint(item.event)]
    if (claimed === received) copies.push(item)
    else {
      rejected.push({
        item,
        kind: "conflict",
        reason: `Conflict: eventId ${item.event.eventId} is already in this batch with another payload`,
        fingerprints: { received, claimed }
      })
    }
  }
  return { poison, items, copies, rejected }
}

/** With the tracer on, gives every decoded item its span. */
const withItemSpans = (decoded: Decoded): Effect.Effect<Decoded> =>
  Effect.flatMap(FiberRef.get(FiberRef.currentTracerEnabled), (tracing) => {
    if (!tracing) return Effect.succeed(decoded)
    const withSpan = (item: Item) =>
      Effect.map(
        Effect.makeSpan(`Worker.handle ${item.event.event}`, {
          parent: Option.getOrUndefined(parentFromHeaders(item.delivery.headers)),
          kind: "consumer",
          captureStackTrace: false,
          attributes: {
            "messaging.message.id": item.event.eventId,
            "opsdesk.event": item.event.event,
            "opsdesk.attempt": item.attempt
          }
        }),
        (span): Item => ({ ...item, span })
      )
    return Effect.all({
      items: Effect.forEach(decoded.items, withSpan),
      copies: Effect.forEach(decoded.copies, withSpan),
      rejected: Effect.forEach(
        decoded.rejected,
        (r) => Effect.map(withSpan(r.item), (item): Rejected => ({ ...r, item }))
      )
    }).pipe(
      Effect.map(({ copies, items, rejected }) => ({ poison: decoded.poison, items, copies, rejected }))
    )
  })

export const deadLetterPoison = (
  env: Env,
  { delivery, reason }: { readonly delivery: Delivery; readonly reason: string }
) =>
  Effect.logError(
    `☠️  Poison message on ${delivery.queue} (messageId: ${delivery.messageId ?? "none"}), sending to DLQ: ${reason}`
  ).pipe(
    Effect.zipRight(delivery.deadLetter({ kind: "poison", reason, attempts: 1 })),
    Effect.zipRight(delivery.ack),
    Effect.zipRight(env.metrics.record("poison", delivery.routingKey)),
    Effect.catchTag("BrokerError", requeueAfterPause(delivery, "dead-letter a poison message"))
  )

/** An `invalid` or `conflict` event: to the DLQ with the reason (and the fingerprints), then acked; no effect. */
export const deadLetterRejected = (env: Env, { fingerprints, item, kind, reason }: Rejected) => {
  const { delivery, event } = item
  return Effect.logError(
    `🚫 ${kind === "conflict" ? "Conflicting" : "Invalid"} ${event.event} on ${delivery.queue} (messageId: ${
      delivery.messageId ?? event.eventId
    }), sending to DLQ: ${reason}`
  ).pipe(
    Effect.zipRight(delivery.deadLetter({ kind, reason, attempts: item.attempt + 1, fingerprints })),
    Effect.zipRight(delivery.ack),
    Effect.zipRight(env.metrics.record(kind === "conflict" ? "conflicts" : "invalid", event.event)),
    Effect.catchTag("BrokerError", requeueAfterPause(delivery, "dead-letter the message")),
    Effect.zipRight(endSpan(item, kind, reason)),
    annotate(item)
  )
}

// ---------------------------------------------------------------------------------------------
// plan
// ---------------------------------------------------------------------------------------------

export interface Plans {
  /** Ready to commit. */
  readonly planned: ReadonlyArray<Planned>
  /** Failed the fault check once: tier 1 tries them again. */
  readonly stumbled: ReadonlyArray<{ readonly item: Item; readonly error: HandlerError }>
  /** Could not be planned (their watchers could not be read): straight to `fail`. */
  readonly unplanned: ReadonlyArray<{ readonly item: Item; readonly error: string }>
  readonly watchers: Watchers
}

export const planBatch = (env: Env, items: ReadonlyArray<Item>): Effect.Effect<Plans> =>
  Effect.gen(function*() {
    const ticketIds = items.flatMap((i) => (i.event.event === "message.sent" ? [i.event.payload.ticketId] : []))
    const lookup = yield* Effect.either(holdWhileTransient(env, env.store.watchers(ticketIds)))
    const watchers = Either.getOrElse(lookup, (): Watchers => new Map())
    const planned: Array<Planned> = []
    const stumbled: Array<{ readonly item: Item; readonly error: HandlerError }> = []
    const unplanned: Array<{ readonly item: Item; readonly error: string }> = []
    for (const item of items) {
      if (item.event.event === "message.sent" && Either.isLeft(lookup)) {
        unplanned.push({ item, error: lookup.left.message })
        continue
      }
      if (env.faults.enabled !== false) {
        const checked = yield* Effect.either(env.faults.check(item.event, item.attempt))
        if (Either.isLeft(checked)) {
          stumbled.push({ item, error: checked.left })
          continue
        }
      }
      planned.push({ ...item, plan: plan(item.event, watchers) })
    }
    return { planned, stumbled, unplanned, watchers }
  })

/**
 * Tier 1 for a batch of `batchSize` events. In a big batch (a backlog) the
 * quick retries would hold up the batch for their delays: there a stumbled
 * event goes straight to tier 2, which waits in the broker instead.
 */
export const tier1 = (env: Env, batchSize: number): Schedule.Schedule<unknown, HandlerError> =>
  batchSize <= IMMEDIATE_RETRY_MAX_BATCH ? env.immediate : Schedule.stop

/** Tier 1 for the stumbled events, all at once: quick retries of the check, then their own commit, or `fail`. */
const retryStumbled = (env: Env, plans: Plans, batchSize: number, startedAt: number) =>
  Effect.forEach(
    plans.stumbled,
    ({ error, item }) =>
      Effect.either(Effect.retry(againAfter(error, env.faults.check(item.event, item.attempt)), tier1(env, batchSize)))
        .pipe(
          Effect.flatMap(Either.match({
            onLeft: (error) => fail(env, item, error.message),
            onRight: () => commit(env, [{ ...item, plan: plan(item.event, plans.watchers) }], startedAt)
          }))
        ),
    { concurrency: "unbounded", discard: true }
  )

// ---------------------------------------------------------------------------------------------
// commit
// ---------------------------------------------------------------------------------------------

export const commit = (env: Env, items: ReadonlyArray<Planned>, startedAt: number): Effect.Effect<void> =>
  holdWhileTransient(env, env.store.commit(env.cfg.processorName, items.map((i) => i.plan))).pipe(
    Effect.retry({ schedule: env.immediate, while: (e) => !e.transient && items.length === 1 }),
    Effect.either,
    Effect.flatMap(Either.match({
      onLeft: (error) =>
        // A rejected statement: split so one bad event cannot hold back the rest.
        // The database still away after the hold: every event takes a retry.
        items.length > 1 && !error.transient
          ? Effect.forEach(items, (item) => commit(env, [item], startedAt), { discard: true })
          : Effect.forEach(items, (item) => fail(env, item, error.message), { discard: true }),
      onRight: (result) => settleCommit(env, items, result, startedAt)
    }))
  )

/** The events the commit refused go to the DLQ; the others (claimed now, or duplicates) are settled. */
const settleCommit = (env: Env, items: ReadonlyArray<Planned>, result: CommitResult, startedAt: number) => {
  if (result.conflicts.size === 0 && result.missing.size === 0) return settle(env, items, result.claimed, startedAt)
  const rejected: Array<Rejected> = []
  const accepted: Array<Planned> = []
  for (const item of items) {
    const id = item.event.eventId
    const claimedWith = result.conflicts.get(id)
    if (claimedWith !== undefined) {
      rejected.push({
        item,
        kind: "conflict",
        reason: `Conflict: eventId ${id} was already processed with another payload`,
        fingerprints: { received: item.plan.fingerprint, claimed: claimedWith }
      })
    } else if (result.missing.has(id)) {
      rejected.push({
        item,
        kind: "invalid",
        reason: `Invalid ${item.event.event}: ${describeRequirement(item.plan.requires)}`
      })
    } else {
      accepted.push(item)
    }
  }
  return Effect.zipRight(
    Effect.forEach(rejected, (r) => deadLetterRejected(env, r), { discard: true }),
    settle(env, accepted, result.claimed, startedAt)
  )
}

// ---------------------------------------------------------------------------------------------
// settle
// ---------------------------------------------------------------------------------------------

/** After the commit: invalidate, ack, then report (acks are what the broker is waiting for). */
export const settle = (
  env: Env,
  items: ReadonlyArray<Planned>,
  claimed: ReadonlySet<string>,
  startedAt: number
): Effect.Effect<void> =>
  Effect.gen(function*() {
    let removed = Option.none<number>()
    if (items.some((i) => i.plan.invalidatesListings)) {
      const result = yield* Effect.either(invalidateListings(env))
      if (Either.isLeft(result)) {
        // Effects are committed. The ticket events take a retry (a duplicate
        // then, and duplicates invalidate again); the others are done.
        const error = `Cache invalidation failed: ${result.left.message}`
        yield* Effect.forEach(items.filter((i) => i.plan.invalidatesListings), (item) => fail(env, item, error), {
          discard: true
        })
        return yield* settle(env, items.filter((i) => !i.plan.invalidatesListings), claimed, startedAt)
      }
      removed = Option.some(result.right)
    }
    yield* Effect.forEach(items, (item) => item.delivery.ack, { discard: true })
    if (items.length > 0) yield* report(env, items, claimed, startedAt, removed)
  })

/** The seed's lines per event, unless the batch is large and LOG_EVENTS=auto: then one summary line. Metrics and spans. */
const report = (
  env: Env,
  items: ReadonlyArray<Planned>,
  claimed: ReadonlySet<string>,
  startedAt: number,
  invalidated: Option.Option<number>
) =>
  Effect.gen(function*() {
    let removed = invalidated
    const now = yield* Clock.currentTimeMillis
    const nowNanos = yield* Clock.currentTimeNanos
    const mode = yield* logMode(env.cfg, items.length)
    const logging = mode === "each"
    const processed = new Map<string, number>()
    const duplicates = new Map<string, number>()
    const timings: Array<Timing> = []
    // Plain code per event; Effects only where there is something to log.
    for (const item of items) {
      const { delivery, event, plan } = item
      if (!claimed.has(event.eventId)) {
        if (logging) yield* Effect.logInfo(duplicateLine(item)).pipe(annotate(item))
        count(duplicates, event.event)
        closeSpan(item, nowNanos, "duplicate")
        continue
      }
      const ms = now - startedAt
      if (logging) {
        const lines = [...plan.lines]
        if (plan.invalidatesListings) {
          lines.push(`   🗑️  Invalidated ${Option.getOrElse(removed, () => 0)} cache key(s)`)
          removed = Option.some(0) // the count belongs to the first ticket event of the batch
        }
        lines.push(`✅ Processed ${event.event} in ${ms}ms (messageId: ${delivery.messageId ?? event.eventId})`)
        yield* Effect.logInfo(lines.join("\n")).pipe(annotate(item), Effect.annotateLogs("durationMs", ms))
      }
      count(processed, event.event)
      timings.push({ eventType: event.event, millis: ms, lagMillis: now - Date.parse(event.occurredAt) })
      closeSpan(item, nowNanos, "processed")
    }
    yield* env.metrics.timings(timings)
    // Counters once per event type and batch, not once per event.
    for (const [type, n] of processed) yield* env.metrics.record("processed", type, n)
    for (const [type, n] of duplicates) yield* env.metrics.record("duplicates", type, n)
    if (mode === "summary") {
      const parts = [...processed].map(([type, n]) => `${type} ${n}`).join(", ")
      const dupes = [...duplicates.values()].reduce((a, b) => a + b, 0)
      yield* Effect.logInfo(
        `✅ Processed ${items.length - dupes} event(s) in ${now - startedAt}ms (${parts || "none"})` +
          (dupes > 0 ? `, ⏭️  ${dupes} duplicate(s) skipped` : "") +
          (Option.isSome(invalidated) ? `, 🗑️  invalidated ${invalidated.value} cache key(s)` : "")
      )
    }
  })

/**
 * Copies of an event already in this batch: settled after the first, as
 * duplicates, with one more invalidation for all of them (the first copy's
 * may have failed).
 */
export const settleCopies = (env: Env, copies: ReadonlyArray<Item>, batchSize: number) =>
  Effect.gen(function*() {
    if (copies.length === 0) return
    if (copies.some((i) => isTicketEvent(i.event))) yield* Effect.ignore(invalidateListings(env))
    yield* Effect.forEach(copies, (item) => item.delivery.ack, { discard: true })
    const mode = yield* logMode(env.cfg, batchSize)
    const now = yield* Clock.currentTimeNanos
    const counts = new Map<string, number>()
    for (const item of copies) {
      if (mode === "each") yield* Effect.logInfo(duplicateLine(item)).pipe(annotate(item))
      count(counts, item.event.event)
      closeSpan(item, now, "duplicate")
    }
    for (const [type, n] of counts) yield* env.metrics.record("duplicates", type, n)
    if (mode === "summary") {
      yield* Effect.logInfo(
        `⏭️  ${copies.length} duplicate cop${copies.length === 1 ? "y" : "ies"} within the batch skipped`
      )
    }
  })

// ---------------------------------------------------------------------------------------------
// fail
// ---------------------------------------------------------------------------------------------

/** Which tier-2 outcome a failure of this attempt gets: a broker-held retry after `delayMs`, or the DLQ. */
export const nextTier = (
  env: Env,
  attempt: number
): { readonly _tag: "Retry"; readonly delayMs: number } | { readonly _tag: "DeadLetter" } =>
  attempt < env.cfg.maxRetries ? { _tag: "Retry", delayMs: env.delays[attempt]! } : { _tag: "DeadLetter" }

export const fail = (env: Env, item: Item, error: string): Effect.Effect<void> => {
  const { attempt, delivery, event } = item
  const { maxRetries } = env.cfg
  const tier = nextTier(env, attempt)
  return Effect.logError(`❌ Error processing ${event.event}: Error: ${error}`).pipe(
    Effect.zipRight(
      tier._tag === "Retry"
        ? Effect.logWarning(`🔄 Retrying ${event.event} (attempt ${attempt + 1}/${maxRetries}) after ${tier.delayMs}ms`)
          .pipe(
            Effect.zipRight(delivery.retryLater({ delayMs: tier.delayMs, attempt: attempt + 1, error })),
            Effect.zipRight(delivery.ack),
            Effect.zipRight(env.metrics.record("retried", event.event)),
            Effect.catchTag("BrokerError", requeueAfterPause(delivery, "schedule the retry")),
            Effect.zipRight(endSpan(item, "retried", error)),
            Effect.catchTag("UnencodableCopy", (e) => unretryable(env, item, error, e))
          )
        : Effect.logError(`🚨 Max retries reached for ${event.event}, sending to DLQ`).pipe(
          Effect.zipRight(delivery.deadLetter({ kind: "failed", reason: error, attempts: attempt + 1 })),
          Effect.zipRight(delivery.ack),
          Effect.zipRight(env.metrics.record("failed", event.event)),
          Effect.catchTag("BrokerError", requeueAfterPause(delivery, "dead-letter the message")),
          Effect.zipRight(endSpan(item, "dead-lettered", error))
        )
    ),
    annotate(item)
  )
}

/** A retry copy that cannot be encoded: the DLQ (trimmed, as poison) rather than its queue, which would loop. */
const unretryable = (env: Env, item: Item, error: string, cause: UnencodableCopy) => {
  const { attempt, delivery, event } = item
  const reason =
    `Cannot be retried: its retry copy cannot be encoded (${cause.message}); the attempt failed with: ${error}`
  return Effect.logError(`🚨 ${event.event} cannot be retried (its copy cannot be encoded), sending to DLQ`).pipe(
    Effect.zipRight(delivery.deadLetter({ kind: "poison", reason, attempts: attempt + 1 })),
    Effect.zipRight(delivery.ack),
    Effect.zipRight(env.metrics.record("poison", event.event)),
    Effect.catchTag("BrokerError", requeueAfterPause(delivery, "dead-letter the message")),
    Effect.zipRight(endSpan(item, "dead-lettered", error))
  )
}

// ---------------------------------------------------------------------------------------------
// Helpers: logging, spans, holds.
// ---------------------------------------------------------------------------------------------

const closeSpan = (item: Item, now: bigint, outcome: string, failure?: string) => {
  if (item.span === undefined) return
  item.span.attribute("opsdesk.outcome", outcome)
  item.span.end(now, failure === undefined ? Exit.void : Exit.fail(failure))
}

const endSpan = (item: Item, outcome: string, failure?: string) =>
  item.span === undefined
    ? Effect.void
    : Effect.flatMap(Clock.currentTimeNanos, (now) => Effect.sync(() => closeSpan(item, now, outcome, failure)))

const annotate = (item: Item) =>
  Effect.annotateLogs({ event: item.event.event, eventId: item.event.eventId, attempt: item.attempt })

/** Skips building the per-event lines when Info is filtered out (LOG_LEVEL=warn, benchmarks). */
const infoEnabled = Effect.map(
  FiberRef.get(FiberRef.currentMinimumLogLevel),
  (min) => LogLevel.greaterThanEqual(LogLevel.Info, min)
)

/** Batches up to this size give a failing event tier-1 (in-process) retries; bigger ones send it straight to tier 2. */
const IMMEDIATE_RETRY_MAX_BATCH = 20

/** With LOG_EVENTS=auto, batches up to this size log every event's lines. */
const AUTO_LOG_LIMIT = 20

/** Per-event lines for a batch of this size, or (when Info is on and LOG_EVENTS is not none) one summary line. */
const logMode = (cfg: WorkerConfig, batchSize: number) =>
  Effect.map(infoEnabled, (info): "each" | "summary" | "none" =>
    !info || cfg.logEvents === "none"
      ? "none"
      : cfg.logEvents === "each" || (cfg.logEvents === "auto" && batchSize <= AUTO_LOG_LIMIT)
      ? "each"
      : "summary")

const count = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1)

const duplicateLine = (item: Item) =>
  `⏭️  Message ${item.delivery.messageId ?? item.event.eventId} (${item.event.event}) already processed, skipping`

const hold = (env: Env, what: string) => (e: { readonly message: string }) =>
  env.holding.warn(`${what} unavailable, holding messages and retrying: ${e.message}`)

/** Retries while the database is unreachable; other errors pass through at once. */
const holdWhileTransient = <A>(env: Env, effect: Effect.Effect<A, StoreError>) =>
  effect.pipe(
    Effect.tapError((e) => (e.transient ? hold(env, "PostgreSQL")(e) : Effect.void)),
    Effect.retry({ schedule: RetryPolicy.infrastructure, while: (e) => e.transient })
  )

/** Drops every cached listing, holding (and retrying) while Redis is away; the number of keys removed. */
const invalidateListings = (env: Env) =>
  env.cache.invalidateAll.pipe(
    Effect.tapError(hold(env, "Redis")),
    Effect.retry(RetryPolicy.infrastructure)
  )

/** Fails with `first` the first time (the try already made), then runs `effect`: for retrying a failure we already have. */
const againAfter = <A, E, R>(first: E, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  let tried = false
  return Effect.suspend(() => {
    if (tried) return effect
    tried = true
    return Effect.fail(first)
  })
}

/**
 * The copy (retry or DLQ) could not be confirmed, so the original must not
 * be acked. It goes back to its queue after a pause instead of holding a
 * prefetch slot until the connection drops (a no-op if the channel is gone).
 */
const requeueAfterPause = (delivery: Delivery, what: string) => (e: { readonly message: string }) =>
  Effect.logWarning(`Could not ${what} (${e.message}); the message goes back to its queue`).pipe(
    Effect.zipRight(Effect.forkDaemon(Effect.delay(delivery.requeue, "1 second"))),
    Effect.asVoid
  )
