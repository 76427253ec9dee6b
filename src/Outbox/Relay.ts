/**
 * The outbox relay: publishes committed outbox rows through the confirmed
 * publisher and marks them published only after the broker confirmed them.
 *
 * It wakes on LISTEN/NOTIFY and also polls every OUTBOX_POLL_INTERVAL_MS as a
 * fallback (a missed notification, a broker that just came back). Each
 * wake-up starts a batch as soon as one of its two pipeline slots is free: a
 * lone write is published at once, and under load the wake-ups that arrive
 * while both slots are busy coalesce into the next batch, which takes
 * everything written meanwhile (up to OUTBOX_BATCH_SIZE; a full batch starts
 * the next at once). So a backlog goes out two batches at a time: the next
 * batch is claimed and sent (in outbox order) while the broker confirms the
 * previous one, whose transaction then marks it published. Rows are taken
 * with FOR UPDATE SKIP LOCKED, so batches (and several relays) never publish
 * the same row at once; a crash between confirm and commit re-publishes the
 * batch, which the worker's idempotency absorbs (at-least-once on the wire).
 * The relay has a small connection pool of its own (see App/ApiProcess.ts).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Effect, FiberRef, Layer, Metric, Option, Queue, Schedule, Stream } from "effect"
import { BrokerError } from "../Broker/Amqp.js"
import type { OutgoingMessage } from "../Broker/Message.js"
import { Publisher } from "../Broker/Publisher.js"
import { EXCHANGE } from "../Broker/Topology.js"
import { OutboxConfig } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { parentFromHeaders, traceHeadersOf } from "../Observability/TraceContext.js"
import { readBacklog } from "./Backlog.js"
import { OUTBOX_CHANNEL } from "./Outbox.js"

interface OutboxRow {
  readonly id: string
  readonly eventId: string
  readonly eventType: string
  /** The envelope's JSON text, stored verbatim (a `json` column): sent as it is, never parsed here. */
  readonly envelope: string
  readonly headers: Record<string, string> | null
  readonly createdAt: Date
}

export const relayPublished = Metric.counter("opsdesk_outbox_published_total", {
  description: "Outbox events confirmed by the broker",
  incremental: true
})
export const outboxBacklog = Metric.gauge("opsdesk_outbox_backlog", { description: "Outbox events not yet published" })
export const outboxOldestAge = Metric.gauge("opsdesk_outbox_oldest_unpublished_seconds", {
  description: "Age of the oldest unpublished outbox event"
})

/** The backlog gauges, refreshed every 5 s. */
const measureBacklog = Effect.gen(function*() {
  const { backlog, oldestUnpublishedSeconds } = yield* readBacklog
  yield* Metric.set(outboxBacklog, backlog)
  yield* Metric.set(outboxOldestAge, oldestUnpublishedSeconds ?? 0)
})

export const toMessage = (row: OutboxRow, trace: Record<string, string> = {}): OutgoingMessage => ({
  exchange: EXCHANGE,
  routingKey: row.eventType,
  content: Buffer.from(row.envelope),
  options: {
    persistent: true,
    contentType: "application/json",
    messageId: row.eventId,
    type: row.eventType,
    appId: "opsdesk",
    timestamp: Math.floor(row.createdAt.getTime() / 1000),
    headers: { ...(row.headers ?? {}), ...trace }
  }
})

/** Batches in flight at once: one waiting for its confirms while the next is claimed and sent. */
export const PIPELINE_DEPTH = 2

/**
 * Publishes one batch; returns how many rows it published. `sending` orders
 * the claim and the send of concurrent batches, so messages reach the broker
 * in outbox order; the wait for confirms and the commit overlap with the next
 * batch.
 */
export const publishBatch = (batchSize: number, sending: Effect.Semaphore) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const publisher = yield* Publisher
    // No point locking rows while the broker is away.
    if (!(yield* publisher.isConnected)) return yield* new BrokerError({ message: "RabbitMQ is not connected" })
    const tracing = yield* FiberRef.get(FiberRef.currentTracerEnabled)
    return yield* sql.withTransaction(
      Effect.gen(function*() {
        const sent = yield* sending.withPermits(1)(Effect.gen(function*() {
          // No ORDER BY: right after a burst the planner's row estimate for the partial index is
          // stale, and with ORDER BY it sorted the whole backlog (on disk) for every batch. Without
          // it, the scan stops after `batchSize` rows, taken in heap order, which for this
          // append-only table is insertion order.
          const rows = yield* sql<
            OutboxRow
          >`SELECT id, event_id, event_type, envelope::text AS envelope, headers, created_at FROM outbox
            WHERE published_at IS NULL LIMIT ${batchSize} FOR UPDATE SKIP LOCKED`
          if (rows.length === 0) return undefined
          // With tracing on, one producer span per event, child of the span that wrote it; its id travels as `traceparent`.
          const spans = tracing
            ? yield* Effect.forEach(rows, (row) =>
              Effect.makeSpan("Outbox.publish", {
                parent: Option.getOrUndefined(parentFromHeaders(row.headers)),
                kind: "producer",
                captureStackTrace: false,
                attributes: {
                  "messaging.destination.name": EXCHANGE,
                  "messaging.message.id": row.eventId,
                  "opsdesk.event": row.eventType
                }
              }))
            : undefined
          const confirmed = yield* publisher.send(
            rows.map((row, i) => toMessage(row, spans ? traceHeadersOf(spans[i]!) : {}))
          )
          return { rows, spans, confirmed }
        }))
        if (sent === undefined) return 0
        const { confirmed, rows, spans } = sent
        const published = yield* Effect.exit(confirmed)
        if (spans) {
          const now = yield* Clock.currentTimeNanos
          for (const span of spans) span.end(now, published)
        }
        yield* published
        yield* sql.unsafe(
          "UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
          [rows.map((r) => r.id)]
        )
        return rows.length
      })
    )
  }).pipe(Effect.tap((n) => Metric.incrementBy(relayPublished, n)))

export const RelayLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* OutboxConfig
    const pg = yield* PgClient.PgClient
    const wake = yield* Queue.sliding<void>(1)

    // LISTEN on a dedicated connection; if PostgreSQL restarts, listen again.
    yield* pg.listen(OUTBOX_CHANNEL).pipe(
      Stream.runForEach(() => Queue.offer(wake, undefined)),
      Effect.tapError((e) => Effect.logWarning(`Outbox LISTEN lost: ${e.message}`)),
      Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.either(Schedule.spaced("5 seconds")))),
      Effect.forkScoped
    )

    const sending = yield* Effect.makeSemaphore(1)
    const slots = yield* Effect.makeSemaphore(PIPELINE_DEPTH)
    // Warn about a stuck relay only once the condition has lasted a few seconds
    // (start-up races the publisher's first connection), then every 5 s at most.
    let failingSince: number | undefined
    const waiting = rateLimitedWarning()
    const batch = publishBatch(cfg.batchSize, sending).pipe(
      Effect.tap(() => Effect.sync(() => (failingSince = undefined))),
      // A full batch means more is waiting: go on at once.
      Effect.flatMap((n) => (n === cfg.batchSize ? Queue.offer(wake, undefined) : Effect.void)),
      // Any failure, even a defect, must not end the relay: log, back off, go on.
      Effect.catchAllCause((cause) =>
        Effect.suspend(() => {
          const now = Date.now()
          failingSince ??= now
          return Effect.zipRight(
            now - failingSince > 3000
              ? waiting.warn(`Outbox relay waiting: ${describe(Cause.squash(cause))}`)
              : Effect.void,
            Effect.sleep("200 millis")
          )
        })
      )
    )
    // A batch per wake-up (a NOTIFY, a full batch, or the poll), as soon as a pipeline slot is free:
    // a lone write goes out at once, and while both slots are busy the wake-ups coalesce (the
    // queue keeps one) into the next batch, which takes everything written meanwhile.
    const loop = Effect.race(Queue.take(wake), Effect.sleep(cfg.pollInterval)).pipe(
      Effect.zipRight(slots.take(1)),
      Effect.zipRight(Effect.forkScoped(Effect.ensuring(batch, slots.release(1)))),
      Effect.forever
    )
    yield* Effect.forkScoped(loop)
    yield* measureBacklog.pipe(Effect.ignore, Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
    yield* Effect.logInfo("Outbox relay started")
  })
)
