/**
 * The outbox relay: publishes committed outbox rows through the confirmed
 * publisher and marks them published only after the broker confirmed them.
 *
 * It wakes on LISTEN (the writers' NOTIFYs after their commits: RelayWake in
 * Outbox.ts) and also polls every OUTBOX_POLL_INTERVAL_MS as a fallback (a
 * missed notification, a broker that just came back). A wake-up
 * on an idle relay starts a batch at once; the wake-ups that arrive while a
 * batch is in flight coalesce into the next one, which takes everything
 * written meanwhile (up to OUTBOX_BATCH_SIZE; a full batch starts the next at
 * once, and a failed one tries again after a pause). Only a backlog goes out
 * two batches at a time: once a full batch is sent, the next is claimed and
 * sent (in outbox order) while the broker confirms the previous one, whose
 * transaction then marks it published. Rows are taken
 * with FOR UPDATE SKIP LOCKED, so batches (and several relays) never publish
 * the same row at once; a crash between confirm and commit re-publishes the
 * batch, which the worker's idempotency absorbs (at-least-once on the wire).
 * The relay has a small connection pool of its own (see App/ApiProcess.ts).
 *
 * Every event is published as mandatory. One the broker returns (no queue is
 * bound to its routing key: a deleted binding, say) is not lost: its row stays
 * unpublished with the reason in `last_error`, is counted
 * (`opsdesk_outbox_unroutable_total`, and the `opsdesk_outbox_unroutable`
 * gauge), logged (at most every 5 s), and taken again after
 * OUTBOX_UNROUTABLE_RETRY_MS until its route exists (the publisher and the
 * worker declare the topology again whenever they reconnect). The rest of its
 * batch is published as usual.
 */
import { SqlClient } from "@effect/sql"
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberRef,
  Layer,
  Metric,
  Option,
  Queue,
  Schedule
} from "effect"
import { BrokerError } from "../Broker/Amqp.js"
import type { OutgoingMessage } from "../Broker/Message.js"
import { Publisher, type PublishOutcome } from "../Broker/Publisher.js"
import { EXCHANGE } from "../Broker/Topology.js"
import { OutboxConfig } from "../Config.js"
import { EVENT_NAMES } from "../Domain/Events.js"
import { describe } from "../Kit/Cause.js"
import { type RateLimitedWarning, rateLimitedWarning } from "../Kit/Warnings.js"
import { parentFromHeaders, traceHeadersOf } from "../Observability/TraceContext.js"
import { forkListener } from "../Store/Listen.js"
import { PREPARED } from "../Store/Sql.js"
import { readBacklog, readUnroutable } from "./Backlog.js"
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
export const relayUnroutable = Metric.counter("opsdesk_outbox_unroutable_total", {
  description:
    "Publishes the broker returned as unroutable (no queue bound to the routing key); each try of a held event counts",
  incremental: true
})
export const outboxUnroutable = Metric.gauge("opsdesk_outbox_unroutable", {
  description: "Outbox events waiting for a route: returned as unroutable and not yet published"
})

/** The backlog gauges, refreshed every 5 s. */
const measureBacklog = Effect.gen(function*() {
  const { backlog, oldestUnpublishedSeconds } = yield* readBacklog
  yield* Metric.set(outboxBacklog, backlog)
  yield* Metric.set(outboxOldestAge, oldestUnpublishedSeconds ?? 0)
  yield* Metric.set(outboxUnroutable, yield* readUnroutable)
})

/** Metric labels come from the fixed set of event names. */
const eventLabel = (eventType: string) =>
  (EVENT_NAMES as ReadonlyArray<string>).includes(eventType) ? eventType : "unknown"

export const toMessage = (row: OutboxRow, trace: Record<string, string> = {}): OutgoingMessage => ({
  exchange: EXCHANGE,
  routingKey: row.eventType,
  content: Buffer.from(row.envelope),
  options: {
    persistent: true,
    // Returned, not dropped, when no queue is bound to its routing key.
    mandatory: true,
    contentType: "application/json",
    messageId: row.eventId,
    type: row.eventType,
    appId: "opsdesk",
    timestamp: Math.floor(row.createdAt.getTime() / 1000),
    headers: { ...(row.headers ?? {}), ...trace }
  }
})

/** How often the LISTEN connection proves it is alive (a lost one is replaced; the poll covers the gap). */
const LISTEN_CHECK = Duration.seconds(30)

/** Batches in flight at once: one waiting for its confirms while the next is claimed and sent. */
export const PIPELINE_DEPTH = 2

/**
 * The rows to publish: those due again after being returned as unroutable,
 * then new ones, `$1` in all. No ORDER BY: right after a burst the planner's
 * row estimate for the partial index is stale, and with ORDER BY it sorted the
 * whole backlog (on disk) for every batch. Without it, each scan stops after
 * the rows it needs, new ones in id order (the index's), which is outbox order.
 * Its columns carry OutboxRow's names, so it runs without the client's
 * renaming pass over every row.
 */
const CLAIM_COLUMNS =
  `id, event_id AS "eventId", event_type AS "eventType", envelope::text AS envelope, headers, created_at AS "createdAt"`
const CLAIM_SQL = `
WITH due AS (
  SELECT ${CLAIM_COLUMNS} FROM outbox
  WHERE published_at IS NULL AND retry_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED
), fresh AS (
  SELECT ${CLAIM_COLUMNS} FROM outbox
  WHERE published_at IS NULL AND retry_at IS NULL
  LIMIT greatest($1 - (SELECT count(*) FROM due), 0) FOR UPDATE SKIP LOCKED
)
SELECT * FROM due UNION ALL SELECT * FROM fresh`

export interface BatchResult {
  /** Rows taken (a full batch means more may be waiting). */
  readonly taken: number
  readonly published: number
  /** Returned as unroutable: they stay unpublished until their retry time. */
  readonly unroutable: ReadonlyArray<{ readonly eventId: string; readonly eventType: string }>
  /** The first refusal, if the broker refused (or never confirmed) some: those rows are taken again after a pause. */
  readonly refused: BrokerError | undefined
}

const nothing: BatchResult = { taken: 0, published: 0, unroutable: [], refused: undefined }

const spanExit = (outcome: PublishOutcome | undefined): Exit.Exit<void, BrokerError> =>
  outcome === undefined
    ? Exit.fail(new BrokerError({ message: "No answer from the broker" }))
    : outcome._tag === "Confirmed"
    ? Exit.void
    : outcome._tag === "Returned"
    ? Exit.fail(new BrokerError({ message: "Returned as unroutable" }))
    : Exit.fail(outcome.error)

/** The client without its renaming pass, made once per client (making one copies the client). */
const claimClients = new WeakMap<SqlClient.SqlClient, SqlClient.SqlClient>()
const claimClient = (sql: SqlClient.SqlClient) => {
  let claim = claimClients.get(sql)
  if (claim === undefined) claimClients.set(sql, claim = sql.withoutTransforms())
  return claim
}

/**
 * Publishes one batch. `sending` orders the claim and the send of concurrent
 * batches, so messages reach the broker in outbox order; the wait for
 * confirms and the commit overlap with the next batch. Confirmed rows are
 * marked published, returned ones keep their reason and a retry time, refused
 * ones are left as they were. `beforeClaim` runs just before the claim is
 * sent, `afterSend` (with the number of rows taken) once they are sent.
 */
export const publishBatch = (
  batchSize: number,
  sending: Effect.Semaphore,
  unroutableRetry: Duration.DurationInput = Duration.seconds(5),
  hooks: {
    readonly beforeClaim?: Effect.Effect<void>
    readonly afterSend?: (taken: number) => Effect.Effect<void>
  } = {}
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const claim = claimClient(sql)
    const publisher = yield* Publisher
    // No point locking rows while the broker is away.
    if (!(yield* publisher.isConnected)) return yield* new BrokerError({ message: "RabbitMQ is not connected" })
    const tracing = yield* FiberRef.get(FiberRef.currentTracerEnabled)
    return yield* sql.withTransaction(
      Effect.gen(function*() {
        const sent = yield* sending.withPermits(1)(Effect.gen(function*() {
          if (hooks.beforeClaim) yield* hooks.beforeClaim
          const rows = yield* claim.unsafe<OutboxRow>(CLAIM_SQL, [batchSize])
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
          if (hooks.afterSend) yield* hooks.afterSend(rows.length)
          return { rows, spans, confirmed }
        }))
        if (sent === undefined) return nothing
        const { confirmed, rows, spans } = sent
        const outcomes = yield* confirmed
        if (spans) {
          const now = yield* Clock.currentTimeNanos
          spans.forEach((span, i) => span.end(now, spanExit(outcomes[i])))
        }
        const published = rows.filter((_, i) => outcomes[i]?._tag === "Confirmed")
        const returned = rows.filter((_, i) => outcomes[i]?._tag === "Returned")
        const refusal = outcomes.find((o) => o._tag === "Refused" || o._tag === "Unencodable")
        const refused = refusal !== undefined && (refusal._tag === "Refused" || refusal._tag === "Unencodable")
          ? refusal.error
          : undefined
        if (published.length > 0) {
          yield* sql.unsafe(
            `${PREPARED}UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1
              WHERE id = ANY($1::bigint[])`,
            [published.map((r) => r.id)]
          )
        }
        if (returned.length > 0) {
          yield* sql.unsafe(
            `UPDATE outbox SET attempts = attempts + 1, retry_at = now() + $2::bigint * interval '1 millisecond',
               last_error = 'Unroutable: no queue is bound to routing key ' || event_type || ' on ${EXCHANGE} (returned at ' ||
                 to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')'
             WHERE id = ANY($1::bigint[])`,
            [returned.map((r) => r.id), Duration.toMillis(unroutableRetry)]
          )
        }
        const result: BatchResult = {
          taken: rows.length,
          published: published.length,
          unroutable: returned.map((r) => ({ eventId: r.eventId, eventType: r.eventType })),
          refused
        }
        return result
      })
    )
  }).pipe(
    Effect.tap((result) =>
      Effect.all([
        Metric.incrementBy(relayPublished, result.published),
        Effect.forEach(
          result.unroutable,
          (r) => Metric.incrementBy(relayUnroutable.pipe(Metric.tagged("event", eventLabel(r.eventType))), 1),
          { discard: true }
        )
      ], { discard: true })
    )
  )

/** The warning for returned events: which routing keys have no queue, at most every 5 s. */
const warnUnroutable = (warning: RateLimitedWarning, result: BatchResult, retry: Duration.Duration) => {
  if (result.unroutable.length === 0) return Effect.void
  const keys = [...new Set(result.unroutable.map((r) => r.eventType))].join(", ")
  return warning.warn(
    `Outbox: ${result.unroutable.length} event(s) returned as unroutable: no queue is bound to routing key(s) ${keys} ` +
      `on ${EXCHANGE}. They stay in the outbox (last_error) and are tried again every ${Duration.format(retry)}; ` +
      `check the bindings (the publisher and the worker declare them again when they reconnect).`
  )
}

export const RelayLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const cfg = yield* OutboxConfig
    const wake = yield* Queue.sliding<void>(1)

    // LISTEN on a connection of its own that notices its own death (Store/Listen.ts). Every
    // notification wakes the relay, and so does each (re)start of LISTEN: rows written while
    // it was down are published now rather than at the next poll.
    yield* forkListener(OUTBOX_CHANNEL, LISTEN_CHECK, () => void Queue.unsafeOffer(wake, undefined))

    const sending = yield* Effect.makeSemaphore(1)
    const slots = yield* Effect.makeSemaphore(PIPELINE_DEPTH)
    // Warn about a stuck relay only once the condition has lasted a few seconds
    // (start-up races the publisher's first connection), then every 5 s at most.
    let failingSince: number | undefined
    const waiting = rateLimitedWarning()
    const unroutable = rateLimitedWarning()
    // A wake-up that came before a claim is sent is answered by it: the NOTIFY
    // follows its row's commit, so the claim's snapshot sees the row (unless
    // another batch holds it, which publishes it or, failing, wakes the relay
    // again). Dropping it saves an empty claim.
    const dropCovered = Effect.asVoid(Queue.poll(wake))
    // `opened` lets the next batch start: when this one ends, or as soon as it has sent a full
    // batch (a backlog), so that the next is claimed and sent while the broker confirms this one.
    const batch = (opened: Deferred.Deferred<void>) =>
      publishBatch(cfg.batchSize, sending, cfg.unroutableRetry, {
        beforeClaim: dropCovered,
        afterSend: (taken) =>
          taken === cfg.batchSize
            ? Effect.zipRight(Deferred.succeed(opened, undefined), Queue.offer(wake, undefined))
            : Effect.void
      }).pipe(
        Effect.tap((result) => warnUnroutable(unroutable, result, cfg.unroutableRetry)),
        // Refused rows stay unpublished and are taken again: the failure path logs and backs off.
        Effect.flatMap((result) => (result.refused === undefined ? Effect.void : Effect.fail(result.refused))),
        Effect.tap(() => Effect.sync(() => (failingSince = undefined))),
        // Any failure, even a defect, must not end the relay: log, back off, and wake it again (the rows
        // this batch held, and those whose wake-ups its claim dropped, are still to publish).
        Effect.catchAllCause((cause) =>
          Effect.suspend(() => {
            const now = Date.now()
            failingSince ??= now
            return Effect.zipRight(
              now - failingSince > 3000
                ? waiting.warn(`Outbox relay waiting: ${describe(Cause.squash(cause))}`)
                : Effect.void,
              Effect.zipRight(Effect.sleep("200 millis"), Queue.offer(wake, undefined))
            )
          })
        ),
        Effect.ensuring(Effect.zipRight(Deferred.succeed(opened, undefined), slots.release(1)))
      )
    // A batch per wake-up (a NOTIFY, a full batch, or the poll): a lone write goes out at once.
    // Under a steady stream of writes the next batch waits for the one in flight, and the
    // wake-ups meanwhile coalesce (the queue keeps one) into it: it takes everything written
    // since, for one transaction instead of one per write. A backlog runs PIPELINE_DEPTH
    // batches at once: a full batch opens the way for the next as soon as it is sent.
    // The next batch's slot and opening are awaited before the wake-up, so a wake-up stays
    // queued while a batch is in flight, where that batch's claim can answer it (dropCovered).
    let previous = yield* Deferred.make<void>()
    yield* Deferred.succeed(previous, undefined)
    const loop = Effect.suspend(() =>
      slots.take(1).pipe(
        Effect.zipRight(Deferred.await(previous)),
        Effect.zipRight(Effect.race(Queue.take(wake), Effect.sleep(cfg.pollInterval))),
        Effect.zipRight(Deferred.make<void>()),
        Effect.flatMap((opened) => {
          previous = opened
          return Effect.forkScoped(batch(opened))
        })
      )
    ).pipe(Effect.forever)
    yield* Effect.forkScoped(loop)
    yield* measureBacklog.pipe(Effect.ignore, Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
    yield* Effect.logInfo("Outbox relay started")
  })
)
