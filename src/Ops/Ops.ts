/**
 * What the ops dashboard reads and does, from the same sources as the CLI:
 *  - queue depths and the DLQ through the `Dlq` service (src/Dlq/Dlq.ts);
 *  - the outbox backlog, and the events in it waiting for a route, with the queries the relay's
 *    gauges use (src/Outbox/Backlog.ts);
 *  - the worker's counters by scraping its Prometheus endpoint
 *    (WORKER_METRICS_URL, default http://127.0.0.1:9464/metrics);
 *  - every live worker, and their sums, from the registry (src/Ops/Workers.ts).
 *
 * The overview never fails: a source that does not answer (RabbitMQ,
 * PostgreSQL, the worker) is reported in its own panel with the reason.
 *
 * DLQ operations run one at a time in this process: each borrows the messages
 * it scans (see Dlq.ts), so a listing running next to a discard would hide
 * the very message the discard looks for.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { DateTime, Duration, Effect, Either, Option, Redacted, Schedule } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import { currentNodes } from "../Broker/Amqp.js"
import type { QueuedMessage } from "../Broker/Message.js"
import { Publisher } from "../Broker/Publisher.js"
import { DLQ } from "../Broker/Topology.js"
import { MetricsToken, OpsHistoryInterval, WorkerMetricsUrl, WorkerRegistryConfig } from "../Config.js"
import { Dlq, type DlqError, type DlqNotFound } from "../Dlq/Dlq.js"
import type { DlqEntry } from "../Dlq/Entry.js"
import { EVENT_NAMES } from "../Domain/Events.js"
import { describe } from "../Kit/Cause.js"
import type { DeliveryChannel } from "../Notifications/Channel.js"
import { DeliveriesRepo, type DeliveryRow, type DeliveryState } from "../Notifications/Repo.js"
import { traced, tracedFn } from "../Observability/Span.js"
import { readBacklog, readUnroutable } from "../Outbox/Backlog.js"
import { recordAudit } from "../Store/Audit.js"
import { readDisabledWebhooks } from "../Webhooks/Status.js"
import {
  type DeliveryItem,
  DeliveryNotFound,
  DlqEntryNotFound,
  MAX_DLQ_OFFSET,
  NotReplayable,
  type Overview,
  Unavailable,
  type WorkerCounters,
  type WorkerEventStats
} from "./Domain.js"
import { capacityFor, type HistorySample, makeRing, toPoints, WINDOW_SECONDS } from "./History.js"
import { parse, type Sample } from "./Prometheus.js"
import { readWorkers } from "./Workers.js"

export const DEFAULT_DLQ_LIMIT = 50
const LATEST_FAILED_DELIVERIES = 10
const BROKER_READ_TIMEOUT = "6 seconds"
const SQL_TIMEOUT = "5 seconds"
const SCRAPE_TIMEOUT = "2 seconds"

const unavailable = (e: DlqError) => new Unavailable({ message: e.message })

const toDeliveryItem = (r: DeliveryRow): DeliveryItem => ({
  id: r.id,
  channel: r.channel,
  state: r.state,
  eventId: r.eventId,
  eventType: r.eventType,
  recipientId: r.recipientId,
  subscriptionId: r.subscriptionId,
  attempts: r.attempts,
  lastError: r.lastError,
  lastStatus: r.lastStatus,
  nextAttemptAt: r.nextAttemptAt.toISOString(),
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString()
})

/** An AMQP header or property value as JSON: Buffers as { base64 }, Dates as ISO-8601, bigints as strings. */
const jsonValue = (u: unknown, depth = 0): unknown => {
  if (depth > 16) return "(nested too deep)"
  if (Buffer.isBuffer(u)) return { base64: u.toString("base64") }
  if (u instanceof Date) return u.toISOString()
  if (typeof u === "bigint") return String(u)
  if (Array.isArray(u)) return u.map((v) => jsonValue(v, depth + 1))
  if (typeof u === "object" && u !== null) {
    return Object.fromEntries(Object.entries(u).map(([k, v]) => [k, jsonValue(v, depth + 1)]))
  }
  return u === undefined ? null : u
}

/** The message view: headers and properties as JSON, the body as text (base64 when it is not UTF-8). */
export const messageView = (entry: DlqEntry, message: QueuedMessage) => {
  const { headers, ...properties } = message.properties
  const text = message.content.toString("utf8")
  const utf8 = Buffer.from(text, "utf8").equals(message.content)
  let json = false
  if (utf8) {
    try {
      JSON.parse(text)
      json = true
    } catch {
      json = false
    }
  }
  return {
    entry,
    properties: jsonValue(Object.fromEntries(Object.entries(properties).filter(([, v]) => v !== undefined))) as Record<
      string,
      unknown
    >,
    headers: jsonValue(headers ?? {}) as Record<string, unknown>,
    routingKey: message.fields.routingKey,
    body: utf8 ? text : message.content.toString("base64"),
    bodyEncoding: utf8 ? "utf8" as const : "base64" as const,
    json,
    size: message.content.length
  }
}

const COUNTERS = {
  opsdesk_worker_processed_total: "processed",
  opsdesk_worker_failed_total: "failed",
  opsdesk_worker_retried_total: "retried",
  opsdesk_worker_duplicates_total: "duplicates",
  opsdesk_worker_poison_total: "poison"
} as const satisfies Record<string, keyof WorkerCounters>

const zero = (): { -readonly [K in keyof WorkerCounters]: number } => ({
  processed: 0,
  failed: 0,
  retried: 0,
  duplicates: 0,
  poison: 0,
  deadLettered: 0
})

/** Per event type: the five counters, and the average processing time and lag from the histograms' sums and counts. */
export const workerStats = (
  samples: ReadonlyArray<Sample>
): {
  readonly events: ReadonlyArray<WorkerEventStats>
  readonly totals: WorkerCounters
  readonly lag: { readonly sum: number; readonly count: number }
} => {
  const byEvent = new Map<
    string,
    { counters: ReturnType<typeof zero>; timeSum: number; timeCount: number; lagSum: number; lagCount: number }
  >()
  const entry = (event: string) => {
    let e = byEvent.get(event)
    if (e === undefined) byEvent.set(event, e = { counters: zero(), timeSum: 0, timeCount: 0, lagSum: 0, lagCount: 0 })
    return e
  }
  for (const event of EVENT_NAMES) entry(event)
  for (const s of samples) {
    if (!s.name.startsWith("opsdesk_worker_") || !Number.isFinite(s.value)) continue
    const e = entry(s.labels["event"] ?? "unknown")
    const counter = (COUNTERS as Record<string, keyof WorkerCounters | undefined>)[s.name]
    if (counter !== undefined) e.counters[counter] += s.value
    else if (s.name === "opsdesk_worker_processing_seconds_sum") e.timeSum += s.value
    else if (s.name === "opsdesk_worker_processing_seconds_count") e.timeCount += s.value
    else if (s.name === "opsdesk_worker_lag_seconds_sum") e.lagSum += s.value
    else if (s.name === "opsdesk_worker_lag_seconds_count") e.lagCount += s.value
  }
  const totals = zero()
  const lag = { sum: 0, count: 0 }
  const events = [...byEvent.entries()].map(([event, e]): WorkerEventStats => {
    e.counters.deadLettered = e.counters.failed + e.counters.poison
    for (const k of Object.keys(totals) as Array<keyof WorkerCounters>) totals[k] += e.counters[k]
    lag.sum += e.lagSum
    lag.count += e.lagCount
    return {
      event,
      ...e.counters,
      avgProcessingMs: e.timeCount > 0 ? (e.timeSum / e.timeCount) * 1000 : null,
      avgLagMs: e.lagCount > 0 ? (e.lagSum / e.lagCount) * 1000 : null
    }
  })
  return { events, totals, lag }
}

export class Ops extends Effect.Service<Ops>()("OpsDesk/Ops", {
  scoped: Effect.gen(function*() {
    const dlq = yield* Dlq
    const deliveriesRepo = yield* DeliveriesRepo
    const sql = yield* SqlClient.SqlClient
    const historyInterval = yield* OpsHistoryInterval
    const metricsToken = yield* MetricsToken
    // The worker's /metrics asks for METRICS_TOKEN when it is set: the scrape sends it.
    const http = (yield* HttpClient.HttpClient).pipe(
      HttpClient.withTracerPropagation(false),
      HttpClient.mapRequest((request) =>
        Option.match(metricsToken, {
          onNone: () => request,
          onSome: (token) => HttpClientRequest.bearerToken(request, Redacted.value(token))
        })
      )
    )
    const metricsUrl = yield* WorkerMetricsUrl
    const registry = yield* WorkerRegistryConfig
    const lock = yield* Effect.makeSemaphore(1)
    const exclusive = lock.withPermits(1)

    const brokerRead = <A>(self: Effect.Effect<A, DlqError>) =>
      self.pipe(
        Effect.mapError(unavailable),
        Effect.timeoutFail({
          duration: BROKER_READ_TIMEOUT,
          onTimeout: () => new Unavailable({ message: "RabbitMQ did not answer in time" })
        })
      )

    /**
     * A read of the DLQ under its lock, bounded like every broker read (a hung broker must not hold the
     * lock: replay, discard and purge wait on it); a message (or a page's anchor) that is gone is a 404.
     */
    const dlqLookup = <A>(self: Effect.Effect<A, DlqError | DlqNotFound>) =>
      Effect.flatMap(
        exclusive(brokerRead(Effect.either(self))),
        Either.match({
          onLeft: (e) =>
            Effect.fail(e._tag === "DlqNotFound" ? new DlqEntryNotFound({ message: e.message }) : unavailable(e)),
          onRight: Effect.succeed
        })
      )

    /** Audit rows for DLQ actions are best effort: the broker has acted already, whatever the database says. */
    const audit = (actor: Actor, action: string, entityId: string, changes: unknown) =>
      recordAudit({ actorId: actor.id, action, entity: "dlq", entityId, changes }).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.catchAllCause((cause) => Effect.logWarning(`Could not record ${action} in the audit log`, cause))
      )

    const outbox = Effect.all([readBacklog, readUnroutable]).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.map(([backlog, unroutable]) => ({ available: true, error: null, ...backlog, unroutable })),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: describe(e),
          backlog: 0,
          oldestUnpublishedSeconds: null,
          unroutable: 0
        })
      ),
      traced("Ops.outbox")
    )

    const worker = Effect.gen(function*() {
      const text = yield* http.get(metricsUrl).pipe(
        Effect.flatMap(HttpClientResponse.filterStatusOk),
        Effect.flatMap((response) => response.text),
        Effect.timeoutFail({
          duration: SCRAPE_TIMEOUT,
          onTimeout: () => new Error(`no answer within ${SCRAPE_TIMEOUT}`)
        })
      )
      const scrapedAt = DateTime.formatIso(yield* DateTime.now)
      return { available: true, error: null, url: metricsUrl, scrapedAt, ...workerStats(parse(text)) }
    }).pipe(
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: `worker metrics unavailable: ${describe(e)}`,
          url: metricsUrl,
          scrapedAt: null,
          ...workerStats([])
        })
      ),
      traced("Ops.worker")
    )

    /** Every live worker from the registry: one row each and their sums. */
    const workers = readWorkers(registry.ttl).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.flatMap((summary) =>
        Effect.map(DateTime.now, (now) => ({
          available: true,
          error: null,
          ttlSeconds: Duration.toSeconds(registry.ttl),
          live: summary.items.length,
          scrapedAt: DateTime.formatIso(now),
          ...summary
        }))
      ),
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: `worker registry unavailable: ${describe(e)}`,
          ttlSeconds: Duration.toSeconds(registry.ttl),
          live: 0,
          scrapedAt: null,
          items: [],
          ...workerStats([])
        })
      ),
      traced("Ops.workers")
    )

    /** The webhook subscriptions OpsDesk disabled: the dashboard flags them. */
    const webhooks = readDisabledWebhooks.pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.map((found) => ({ available: true, error: null, ...found })),
      Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") }),
      Effect.catchAll((e) => Effect.succeed({ available: false, error: describe(e), disabled: 0, items: [] })),
      traced("Ops.webhooks")
    )

    /** Depths first, then the listing: a listing borrows DLQ messages, which a depth read meanwhile would miss. */
    const broker = (limit: number) =>
      exclusive(Effect.gen(function*() {
        const queues = yield* brokerRead(dlq.queueDepths).pipe(
          Effect.map((items) => ({ available: true, error: null, items })),
          Effect.catchAll((e) => Effect.succeed({ available: false, error: e.message, items: [] }))
        )
        const depth = queues.items.find((q) => q.queue === DLQ)?.messages ?? null
        const entries = yield* brokerRead(dlq.list({ limit })).pipe(
          Effect.map((entries) => ({ available: true, error: null, depth, limit, entries })),
          Effect.catchAll((e) => Effect.succeed({ available: false, error: e.message, depth, limit, entries: [] }))
        )
        return { queues, dlq: entries }
      }))

    const sqlRead = <A, E>(self: Effect.Effect<A, E>) =>
      self.pipe(
        Effect.timeoutFail({ duration: SQL_TIMEOUT, onTimeout: () => new Error("PostgreSQL did not answer in time") })
      )

    /** Pending and failed deliveries per channel, the oldest pending, and the newest failed ones. */
    const deliveries = Effect.all([
      deliveriesRepo.summary,
      deliveriesRepo.list({ state: "failed", limit: LATEST_FAILED_DELIVERIES })
    ]).pipe(
      sqlRead,
      Effect.map(([channels, failed]) => {
        const waits = channels.flatMap((c) => (c.oldestPendingSeconds === null ? [] : [c.oldestPendingSeconds]))
        return {
          available: true,
          error: null,
          channels,
          pending: channels.reduce((n, c) => n + c.pending, 0),
          failed: channels.reduce((n, c) => n + c.failed, 0),
          oldestPendingSeconds: waits.length === 0 ? null : Math.max(...waits),
          latestFailed: failed.map(toDeliveryItem)
        }
      }),
      Effect.catchAll((e) =>
        Effect.succeed({
          available: false,
          error: `deliveries unavailable: ${describe(e)}`,
          channels: [],
          pending: 0,
          failed: 0,
          oldestPendingSeconds: null,
          latestFailed: []
        })
      ),
      traced("Ops.deliveries")
    )

    /** The nodes this process's connections are on (Broker/Amqp.ts keeps them), the publisher's first. */
    const publisher = yield* Effect.serviceOption(Publisher)
    const brokerNodes = Effect.zipWith(
      Option.match(publisher, { onNone: () => Effect.succeedNone, onSome: (p) => p.node }),
      currentNodes,
      (node, nodes) => ({
        publisher: Option.getOrNull(node),
        connections: [...nodes.entries()].map(([connection, node]) => ({ connection, node }))
          .sort((a, b) => a.connection.localeCompare(b.connection))
      })
    )

    // ---- the history: sampled in the background from the first dashboard read on, so an API nobody watches
    // opens no broker connection for it.
    const ring = makeRing(capacityFor(Duration.toMillis(historyInterval)))

    const sample = Effect.gen(function*() {
      const [registry, queues] = yield* Effect.all([
        workers,
        brokerRead(exclusive(dlq.queueDepths)).pipe(Effect.option)
      ], { concurrency: "unbounded" })
      // Every live worker when the registry has any, else the one scraped (as the Worker card shows).
      const source = registry.available && registry.live > 0
        ? { available: true, totals: registry.totals, lag: registry.lag }
        : yield* worker
      const at = yield* DateTime.now
      const s: HistorySample = {
        at: DateTime.toEpochMillis(at),
        counters: source.available ? source.totals : null,
        lag: source.available ? source.lag : null,
        queues: Option.match(queues, {
          onNone: () => null,
          onSome: (items) => Object.fromEntries(items.map((q) => [q.queue, q.messages]))
        })
      }
      ring.add(s)
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("The ops history could not take a sample", cause)),
      traced("Ops.sample")
    )
    const scope = yield* Effect.scope
    const startSampler = yield* Effect.once(
      sample.pipe(Effect.repeat(Schedule.spaced(historyInterval)), Effect.forkIn(scope), Effect.asVoid)
    )

    const history = tracedFn("Ops.history")(function*() {
      yield* startSampler
      const now = yield* DateTime.now
      return {
        intervalSeconds: Duration.toSeconds(historyInterval),
        windowSeconds: WINDOW_SECONDS,
        points: toPoints(ring.snapshot(DateTime.toEpochMillis(now)))
      }
    })

    const overview = tracedFn("Ops.overview")(function*(options: { readonly dlqLimit?: number | undefined }) {
      yield* startSampler
      const [brokerPanels, outboxPanel, workerPanel, workersPanel, webhooksPanel, deliveriesPanel, nodes] =
        yield* Effect
          .all(
            [broker(options.dlqLimit ?? DEFAULT_DLQ_LIMIT), outbox, worker, workers, webhooks, deliveries, brokerNodes],
            { concurrency: "unbounded" }
          )
      const { lag: _workersLag, ...workersShown } = workersPanel
      const { lag: _workerLag, ...workerShown } = workerPanel
      const result: Overview = {
        generatedAt: DateTime.formatIso(yield* DateTime.now),
        queues: brokerPanels.queues,
        outbox: outboxPanel,
        worker: workerShown,
        workers: workersShown,
        webhooks: webhooksPanel,
        deliveries: deliveriesPanel,
        broker: nodes,
        dlq: brokerPanels.dlq
      }
      return result
    })

    const listDlq = tracedFn("Ops.listDlq")(
      function*(options: {
        readonly limit?: number | undefined
        readonly offset?: number | undefined
        readonly after?: string | undefined
        readonly event?: string | undefined
        readonly kind?: DlqEntry["kind"] | undefined
        readonly eventId?: string | undefined
      }) {
        const limit = options.limit ?? DEFAULT_DLQ_LIMIT
        const offset = options.offset ?? 0
        const keep = (e: DlqEntry) =>
          (options.event === undefined || e.event === options.event || e.originalRoutingKey === options.event) &&
          (options.kind === undefined || e.kind === options.kind) &&
          (options.eventId === undefined || e.eventId === options.eventId || e.messageId === options.eventId)
        const { depth, page } = yield* dlqLookup(Effect.all({
          depth: dlq.depth,
          page: dlq.page({ after: options.after, reach: MAX_DLQ_OFFSET, offset, limit, keep })
        }))
        const last = page.entries[page.entries.length - 1]
        return {
          depth,
          offset: page.before,
          limit,
          hasMore: page.hasMore,
          next: page.hasMore && last !== undefined ? last.id : null,
          entries: page.entries
        }
      }
    )

    const getDlqMessage = tracedFn("Ops.getDlqMessage")(function*(id: string) {
      const found = yield* dlqLookup(dlq.find(id))
      return messageView(found.entry, found.message)
    })

    const dbUnavailable = (e: unknown) => new Unavailable({ message: describe(e) })

    const listDeliveries = tracedFn("Ops.listDeliveries")(function*(options: {
      readonly state?: DeliveryState | undefined
      readonly channel?: DeliveryChannel | undefined
      readonly before?: string | undefined
      readonly limit?: number | undefined
    }) {
      const limit = options.limit ?? DEFAULT_DLQ_LIMIT
      const rows = yield* deliveriesRepo.list({
        state: options.state ?? "failed",
        channel: options.channel,
        before: options.before,
        limit: limit + 1
      }).pipe(sqlRead, Effect.mapError(dbUnavailable))
      const items = rows.slice(0, limit).map(toDeliveryItem)
      return { items, next: rows.length > limit ? items[items.length - 1]!.id : null }
    })

    const retryDeliveries = tracedFn("Ops.retryDeliveries")(
      function*(actor: Actor, target: { readonly id: string } | { readonly channel?: DeliveryChannel | undefined }) {
        // No read timeout on a write: a timeout after the commit would answer 503 for rows that were retried.
        const retried = yield* deliveriesRepo.retry("id" in target ? { ids: [target.id] } : target, {
          actorId: actor.id,
          via: "ops"
        }).pipe(Effect.mapError(dbUnavailable))
        if ("id" in target && retried.length === 0) {
          return yield* new DeliveryNotFound({ message: `No failed delivery with id ${target.id}` })
        }
        return { retried }
      }
    )

    const replayOne = tracedFn("Ops.replayOne")(function*(actor: Actor, id: string, force = false) {
      const result = yield* exclusive(dlq.replayOne({ id, force })).pipe(
        Effect.catchTags({
          DlqNotFound: (e) => Effect.fail(new DlqEntryNotFound({ message: e.message })),
          BrokerError: (e) => Effect.fail(unavailable(e)),
          TopologyError: (e) => Effect.fail(unavailable(e))
        })
      )
      yield* audit(actor, "dlq.replay", id, {
        replayed: result.replayed,
        skipped: result.skippedMessages,
        ...(force ? { force, forced: result.forced } : {})
      })
      if (result.replayed === 0) {
        const skipped = result.skippedMessages[0]
        const reason = skipped?.reason ?? "it was not replayed"
        return yield* new NotReplayable({
          message: `Cannot replay ${id}: ${reason}`,
          ...(skipped?.tooOld ? { tooOld: true } : {})
        })
      }
      return result
    })

    const replayAll = tracedFn("Ops.replayAll")(function*(actor: Actor, force = false) {
      const result = yield* exclusive(dlq.replay({ all: true }, { force })).pipe(Effect.mapError(unavailable))
      yield* audit(actor, "dlq.replay", "all", {
        replayed: result.replayed,
        skipped: result.skipped,
        ...(force ? { force, forced: result.forced } : {})
      })
      return result
    })

    const discard = tracedFn("Ops.discard")(function*(actor: Actor, id: string) {
      yield* exclusive(dlq.discard({ id })).pipe(
        Effect.catchTags({
          DlqNotFound: (e) => Effect.fail(new DlqEntryNotFound({ message: e.message })),
          BrokerError: (e) => Effect.fail(unavailable(e)),
          TopologyError: (e) => Effect.fail(unavailable(e))
        })
      )
      yield* audit(actor, "dlq.discard", id, {})
      return { discarded: id }
    })

    const purge = tracedFn("Ops.purge")(function*(actor: Actor) {
      const purged = yield* exclusive(dlq.purge()).pipe(Effect.mapError(unavailable))
      yield* audit(actor, "dlq.purge", "all", { purged })
      return { purged }
    })

    return {
      overview,
      history,
      listDlq,
      getDlqMessage,
      replayOne,
      replayAll,
      discard,
      purge,
      listDeliveries,
      retryDeliveries
    } as const
  }),
  // Its own Dlq (lazy: no RabbitMQ connection until the first DLQ read), the deliveries' SQL (the CLI's
  // `opsdesk deliveries` runs the same) and a fetch client for the scrape.
  dependencies: [Dlq.Default, DeliveriesRepo.Default, FetchHttpClient.layer]
}) {}
