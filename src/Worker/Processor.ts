/**
 * The heart of the worker: takes a batch of deliveries and settles every one
 * of them, each with its own outcome.
 *
 *  1. Decode: a body that is not JSON or fails its Schema is poison and goes to
 *     the DLQ at once, with the reason in its headers; it is never retried.
 *  2. Plan each event (fault check, tier-1 immediate retries on failure).
 *  3. Commit all plans in one transaction: claims in `processed_events` plus
 *     notification rows. Unclaimed events are duplicates.
 *     - database unreachable: hold and retry (no retry is spent);
 *     - statement rejected: split the batch and commit one by one, so one bad
 *       event cannot hold back the rest.
 *  4. After commit: invalidate cached listings once if any ticket event was in
 *     the batch (duplicates too: the first try may have died before this), log
 *     the seed's lines, ack.
 *  Failures: tier 2, a broker-held delayed retry, up to MAX_RETRIES; then the
 *  DLQ with the error, the attempts and the original routing key. The copy is
 *  confirmed by the broker before the original is acked; if it cannot be, the
 *  original stays unacked and comes back.
 */
import { Clock, Effect, Either, Exit, FiberRef, LogLevel, Option, Schedule, type Tracer } from "effect"
import { parentFromHeaders } from "../Observability/TraceContext.js"
import type { WorkerConfig } from "../Config.js"
import { type DomainEvent, isTicketEvent } from "../Domain/Events.js"
import { TicketListCache } from "../Tickets/ListCache.js"
import { attemptOf, decodeDelivery, type Delivery } from "../Broker/Delivery.js"
import { EventStore, type StoreError } from "./EventStore.js"
import { Faults, type HandlerError } from "./Faults.js"
import { plan, type Plan, type Watchers } from "./Handlers.js"
import { type Timing, WorkerMetrics } from "./Metrics.js"
import * as RetryPolicy from "./RetryPolicy.js"

interface Item {
  readonly delivery: Delivery
  readonly event: DomainEvent
  readonly attempt: number
  /**
   * `Worker.handle <event>`, a child of the relay's publish span (from the AMQP `traceparent`).
   * Only when the tracer is on: off (the default), a span per event would be pure cost.
   */
  readonly span: Tracer.Span | undefined
}

const closeSpan = (item: Item, now: bigint, outcome: string, failure?: string) => {
  if (item.span === undefined) return
  item.span.attribute("opsdesk.outcome", outcome)
  item.span.end(now, failure === undefined ? Exit.void : Exit.fail(failure))
}

const endSpan = (item: Item, outcome: string, failure?: string) =>
  item.span === undefined ? Effect.void : Effect.flatMap(Clock.currentTimeNanos, (now) => Effect.sync(() => closeSpan(item, now, outcome, failure)))

interface Planned extends Item {
  readonly plan: Plan
}

/** Skips building the per-event lines when Info is filtered out (LOG_LEVEL=warn, benchmarks). */
const infoEnabled = Effect.map(FiberRef.get(FiberRef.currentMinimumLogLevel), (min) => LogLevel.greaterThanEqual(LogLevel.Info, min))

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

/** Fails with `first` the first time (the try already made), then runs `effect`: for retrying a failure we already have. */
const againAfter = <A, E, R>(first: E, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  let tried = false
  return Effect.suspend(() => {
    if (tried) return effect
    tried = true
    return Effect.fail(first)
  })
}

const count = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1)

export type ProcessBatch = (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void>

export const makeProcessor = (cfg: WorkerConfig) =>
  Effect.gen(function*() {
    const store = yield* EventStore
    const cache = yield* TicketListCache
    const faults = yield* Faults
    const metrics = yield* WorkerMetrics
    const delays = RetryPolicy.brokerDelays(cfg)
    const immediate = RetryPolicy.immediate(cfg)

    let lastHoldWarning = 0
    const holdWarning = (what: string, message: string) =>
      Effect.suspend(() => {
        const now = Date.now()
        if (now - lastHoldWarning < 5000) return Effect.void
        lastHoldWarning = now
        return Effect.logWarning(`${what} unavailable, holding messages and retrying: ${message}`)
      })

    /** Retries while the database is unreachable; other errors pass through at once. */
    const holdWhileTransient = <A>(effect: Effect.Effect<A, StoreError>) =>
      effect.pipe(
        Effect.tapError((e) => (e.transient ? holdWarning("PostgreSQL", e.message) : Effect.void)),
        Effect.retry({ schedule: RetryPolicy.infrastructure, while: (e) => e.transient })
      )

    const annotate = (item: Item) =>
      Effect.annotateLogs({ event: item.event.event, eventId: item.event.eventId, attempt: item.attempt })

    /**
     * The copy (retry or DLQ) could not be confirmed, so the original must not
     * be acked. It goes back to its queue after a pause instead of holding a
     * prefetch slot until the connection drops (a no-op if the channel is gone).
     */
    const settleFailure = (delivery: Delivery, what: string) => (e: { readonly message: string }) =>
      Effect.logWarning(`Could not ${what} (${e.message}); the message goes back to its queue`).pipe(
        Effect.zipRight(Effect.forkDaemon(Effect.delay(delivery.requeue, "1 second"))),
        Effect.asVoid
      )

    const deadLetterPoison = (delivery: Delivery, reason: string) =>
      Effect.logError(`☠️  Poison message on ${delivery.queue} (messageId: ${delivery.messageId ?? "none"}), sending to DLQ: ${reason}`).pipe(
        Effect.zipRight(delivery.deadLetter({ kind: "poison", reason, attempts: 1 })),
        Effect.zipRight(delivery.ack),
        Effect.zipRight(metrics.record("poison", delivery.routingKey)),
        Effect.catchTag("BrokerError", settleFailure(delivery, "dead-letter a poison message"))
      )

    /** Tier 2: a broker-held delayed retry, or the DLQ once the retries are spent. */
    const fail = (item: Item, error: string) => {
      const { attempt, delivery, event } = item
      const log = Effect.logError(`❌ Error processing ${event.event}: Error: ${error}`)
      if (attempt < cfg.maxRetries) {
        const delayMs = delays[attempt]!
        return log.pipe(
          Effect.zipRight(Effect.logWarning(`🔄 Retrying ${event.event} (attempt ${attempt + 1}/${cfg.maxRetries}) after ${delayMs}ms`)),
          Effect.zipRight(delivery.retryLater({ delayMs, attempt: attempt + 1, error })),
          Effect.zipRight(delivery.ack),
          Effect.zipRight(metrics.record("retried", event.event)),
          Effect.catchTag("BrokerError", settleFailure(delivery, "schedule the retry")),
          Effect.zipRight(endSpan(item, "retried", error)),
          annotate(item)
        )
      }
      return log.pipe(
        Effect.zipRight(Effect.logError(`🚨 Max retries reached for ${event.event}, sending to DLQ`)),
        Effect.zipRight(delivery.deadLetter({ kind: "failed", reason: error, attempts: attempt + 1 })),
        Effect.zipRight(delivery.ack),
        Effect.zipRight(metrics.record("failed", event.event)),
        Effect.catchTag("BrokerError", settleFailure(delivery, "dead-letter the message")),
        Effect.zipRight(endSpan(item, "dead-lettered", error)),
        annotate(item)
      )
    }

    const invalidate = holdWhileTransientRedis(cache.invalidateAll, holdWarning)

    /** Step 3 and 4 for a group of planned items. */
    const commit = (items: ReadonlyArray<Planned>, startedAt: number): Effect.Effect<void> =>
      holdWhileTransient(store.commit(cfg.processorName, items.map((i) => i.plan))).pipe(
        Effect.retry({ schedule: immediate, while: (e) => !e.transient && items.length === 1 }),
        Effect.either,
        Effect.flatMap(Either.match({
          onLeft: (error) =>
            // A rejected statement: split so one bad event cannot hold back the rest.
            // The database still away after the hold: every event takes a retry.
            items.length > 1 && !error.transient
              ? Effect.forEach(items, (item) => commit([item], startedAt), { discard: true })
              : Effect.forEach(items, (item) => fail(item, error.message), { discard: true }),
          onRight: (claimed) => finish(items, claimed, startedAt)
        }))
      )

    const finish = (items: ReadonlyArray<Planned>, claimed: ReadonlySet<string>, startedAt: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        let removed = Option.none<number>()
        if (items.some((i) => i.plan.invalidatesListings)) {
          const result = yield* Effect.either(invalidate)
          if (Either.isLeft(result)) {
            // Effects are committed. The ticket events take a retry (a duplicate
            // then, and duplicates invalidate again); the others are done.
            const error = `Cache invalidation failed: ${result.left.message}`
            yield* Effect.forEach(items.filter((i) => i.plan.invalidatesListings), (item) => fail(item, error), { discard: true })
            return yield* finish(items.filter((i) => !i.plan.invalidatesListings), claimed, startedAt)
          }
          removed = Option.some(result.right)
        }
        // Settle first, then report: acks are what the broker is waiting for.
        yield* Effect.forEach(items, (item) => item.delivery.ack, { discard: true })
        const now = yield* Clock.currentTimeMillis
        const nowNanos = yield* Clock.currentTimeNanos
        // The seed's lines per event, unless the batch is large and LOG_EVENTS=auto: then one summary line.
        const mode = yield* logMode(cfg, items.length)
        const logging = mode === "each"
        const processed = new Map<string, number>()
        const duplicates = new Map<string, number>()
        const timings: Array<Timing> = []
        // Plain code per event; Effects only where there is something to log.
        for (const item of items) {
          const { delivery, event, plan } = item
          const messageId = delivery.messageId ?? event.eventId
          if (!claimed.has(event.eventId)) {
            if (logging) yield* Effect.logInfo(`⏭️  Message ${messageId} (${event.event}) already processed, skipping`).pipe(annotate(item))
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
            lines.push(`✅ Processed ${event.event} in ${ms}ms (messageId: ${messageId})`)
            yield* Effect.logInfo(lines.join("\n")).pipe(annotate(item), Effect.annotateLogs("durationMs", ms))
          }
          count(processed, event.event)
          timings.push({ eventType: event.event, millis: ms, lagMillis: now - Date.parse(event.occurredAt) })
          closeSpan(item, nowNanos, "processed")
        }
        yield* metrics.timings(timings)
        // Counters once per event type and batch, not once per event.
        for (const [type, n] of processed) yield* metrics.record("processed", type, n)
        for (const [type, n] of duplicates) yield* metrics.record("duplicates", type, n)
        if (mode === "summary") {
          const parts = [...processed].map(([type, n]) => `${type} ${n}`).join(", ")
          const dupes = [...duplicates.values()].reduce((a, b) => a + b, 0)
          yield* Effect.logInfo(
            `✅ Processed ${items.length - dupes} event(s) in ${now - startedAt}ms (${parts || "none"})` +
              (dupes > 0 ? `, ⏭️  ${dupes} duplicate(s) skipped` : "") +
              (Option.isSome(removed) ? `, 🗑️  invalidated ${removed.value} cache key(s)` : "")
          )
        }
      })

    const processBatch: ProcessBatch = (deliveries) =>
      Effect.gen(function*() {
        const startedAt = yield* Clock.currentTimeMillis
        const tracing = yield* FiberRef.get(FiberRef.currentTracerEnabled)
        // 1. Decode; the first copy of an event in the batch is the one that runs.
        const items: Array<Item> = []
        const seen = new Map<string, Item>()
        const inBatchDuplicates: Array<Item> = []
        for (const delivery of deliveries) {
          const decoded = decodeDelivery(delivery)
          if (Either.isLeft(decoded)) {
            yield* deadLetterPoison(delivery, decoded.left)
            continue
          }
          const event = decoded.right
          const attempt = attemptOf(delivery.headers, cfg.maxRetries)
          const span = tracing
            ? yield* Effect.makeSpan(`Worker.handle ${event.event}`, {
              parent: Option.getOrUndefined(parentFromHeaders(delivery.headers)),
              kind: "consumer",
              captureStackTrace: false,
              attributes: { "messaging.message.id": event.eventId, "opsdesk.event": event.event, "opsdesk.attempt": attempt }
            })
            : undefined
          const item: Item = { delivery, event, attempt, span }
          if (seen.has(item.event.eventId)) inBatchDuplicates.push(item)
          else {
            seen.set(item.event.eventId, item)
            items.push(item)
          }
        }
        // 2. Plan.
        const ticketIds = items.flatMap((i) => (i.event.event === "message.sent" ? [i.event.payload.ticketId] : []))
        const watchers = yield* Effect.either(holdWhileTransient(store.watchers(ticketIds)))
        const watchersOf = Either.getOrElse(watchers, (): Watchers => new Map())
        const planned: Array<Planned> = []
        const stumbled: Array<{ readonly item: Item; readonly error: HandlerError }> = []
        for (const item of items) {
          if (item.event.event === "message.sent" && Either.isLeft(watchers)) {
            yield* fail(item, watchers.left.message)
            continue
          }
          if (faults.enabled !== false) {
            const checked = yield* Effect.either(faults.check(item.event, item.attempt))
            if (Either.isLeft(checked)) {
              stumbled.push({ item, error: checked.left })
              continue
            }
          }
          planned.push({ ...item, plan: plan(item.event, watchersOf) })
        }
        // 3 and 4 for the events that went through, and, alongside (so that neither waits for the
        // other), tier 1 for the ones that stumbled, all at once: quick in-process retries, then
        // their own commit, or tier 2 (a broker-held retry, confirmed by the broker) if they keep
        // failing. In a big batch (a backlog) tier-1 retries would hold up the batch for their
        // delays: there the stumbled go straight to tier 2, which waits in the broker instead.
        const tier1: Schedule.Schedule<unknown, HandlerError> = items.length <= IMMEDIATE_RETRY_MAX_BATCH ? immediate : Schedule.stop
        const retried = Effect.forEach(stumbled, ({ error, item }) =>
          Effect.either(Effect.retry(againAfter(error, faults.check(item.event, item.attempt)), tier1)).pipe(
            Effect.flatMap(Either.match({
              onLeft: (error) => fail(item, error.message),
              onRight: () => commit([{ ...item, plan: plan(item.event, watchersOf) }], startedAt)
            }))
          ), { concurrency: "unbounded", discard: true })
        yield* Effect.all([planned.length > 0 ? commit(planned, startedAt) : Effect.void, retried], { concurrency: "unbounded", discard: true })
        // Copies of an event already in this batch: settled after the first, as duplicates, with one
        // more invalidation for all of them (the first copy's may have failed).
        if (inBatchDuplicates.length > 0) {
          if (inBatchDuplicates.some((i) => isTicketEvent(i.event))) yield* Effect.ignore(invalidate)
          yield* Effect.forEach(inBatchDuplicates, (item) => item.delivery.ack, { discard: true })
          const mode = yield* logMode(cfg, deliveries.length)
          const logging = mode === "each"
          const now = yield* Clock.currentTimeNanos
          const counts = new Map<string, number>()
          for (const item of inBatchDuplicates) {
            if (logging) {
              yield* Effect.logInfo(`⏭️  Message ${item.delivery.messageId ?? item.event.eventId} (${item.event.event}) already processed, skipping`).pipe(annotate(item))
            }
            count(counts, item.event.event)
            closeSpan(item, now, "duplicate")
          }
          for (const [type, n] of counts) yield* metrics.record("duplicates", type, n)
          if (mode === "summary") {
            yield* Effect.logInfo(`⏭️  ${inBatchDuplicates.length} duplicate cop${inBatchDuplicates.length === 1 ? "y" : "ies"} within the batch skipped`)
          }
        }
      }).pipe(
        // A bug must not strand messages in the prefetch window: give them back.
        Effect.catchAllCause((cause) =>
          Effect.logError("Unexpected failure while processing a batch; requeueing it", cause).pipe(
            Effect.zipRight(Effect.forEach(deliveries, (d) => d.requeue, { discard: true }))
          )
        )
      )

    return processBatch
  })

const holdWhileTransientRedis = <A, E extends { readonly message: string }>(
  effect: Effect.Effect<A, E>,
  warn: (what: string, message: string) => Effect.Effect<void>
) =>
  effect.pipe(
    Effect.tapError((e) => warn("Redis", e.message)),
    Effect.retry(RetryPolicy.infrastructure)
  )
