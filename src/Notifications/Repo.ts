/**
 * SQL for deliveries (migration 0009): the dispatcher's claim and record, and
 * the operator's listing, summary and retry (CLI, dashboard). Rows are written
 * by the worker's claim statement (src/Worker/EventStore.ts), never here.
 *
 * A claim takes due pending rows of one channel with FOR UPDATE SKIP LOCKED and
 * leases them (`locked_until`) in the same statement, so concurrent
 * dispatchers never take the same row while its lease holds; the outcome of
 * every try is recorded with the delivery's new state in one statement.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Data, Effect } from "effect"
import { auditInsert } from "../Store/Audit.js"
import { describeSqlError, isTransientSqlError } from "../Store/SqlState.js"
import type { DeliveryChannel, DeliveryJob } from "./Channel.js"
import type { AttemptOutcome } from "./Metrics.js"

export class DeliveriesError extends Data.TaggedError("DeliveriesError")<{
  readonly message: string
  readonly transient: boolean
  readonly cause?: unknown
}> {}

const toError = (what: string) => (error: SqlError.SqlError) =>
  new DeliveriesError({
    message: `${what}: ${describeSqlError(error)}`,
    transient: isTransientSqlError(error),
    cause: error
  })

export type DeliveryState = "pending" | "delivered" | "failed"

/** A claimed row: the job, the tier-2 round this claim is (1 on the first), and its fairness key. */
export interface Claimed {
  readonly job: DeliveryJob
  readonly round: number
}

interface ClaimRow {
  readonly id: string
  readonly idempotencyKey: string
  readonly channel: DeliveryChannel
  readonly eventId: string
  readonly eventType: string
  readonly recipientId: string | null
  readonly subscriptionId: string | null
  readonly payload: unknown
  readonly attempts: number
  readonly rounds: number
}

/**
 * `due` locks a window of due rows (skipping those another claim holds), then
 * at most `$5` per webhook subscription of them are leased (each email is its
 * own key): one busy subscription cannot fill the pool. Subscriptions already
 * at their in-flight limit in this dispatcher (`$3`) are left out.
 */
const CLAIM_SQL = `
WITH due AS (
  SELECT id, next_attempt_at, coalesce(subscription_id::text, id::text) AS fair_key FROM deliveries
  WHERE channel = $1 AND state = 'pending' AND next_attempt_at <= now()
    AND (locked_until IS NULL OR locked_until <= now())
    AND (subscription_id IS NULL OR subscription_id <> ALL($3::uuid[]))
  ORDER BY next_attempt_at, id
  LIMIT $2 * 4
  FOR UPDATE SKIP LOCKED
), picked AS (
  SELECT id FROM (
    SELECT id, next_attempt_at, row_number() OVER (PARTITION BY fair_key ORDER BY next_attempt_at, id) AS rn FROM due
  ) ranked
  WHERE rn <= $5
  ORDER BY next_attempt_at, id
  LIMIT $2
)
UPDATE deliveries d
SET locked_until = now() + $4::bigint * interval '1 millisecond', rounds = d.rounds + 1, updated_at = now()
FROM picked WHERE d.id = picked.id
RETURNING d.id::text AS id, d.idempotency_key, d.channel, d.event_id, d.event_type, d.recipient_id::text AS recipient_id,
  d.subscription_id::text AS subscription_id, d.payload, d.attempts, d.rounds`

/**
 * One try's outcome and the delivery's new state, in one statement. `$6`
 * (state) 'pending' with `$7` (delay, ms) null keeps the lease (a quick retry
 * follows), with a delay releases it until then. The state changes only while
 * pending: a row another dispatcher settled after a lost lease stays settled,
 * though this try is logged.
 */
const RECORD_SQL = `
WITH logged AS (
  INSERT INTO delivery_attempt_log (delivery_id, outcome, status, error, duration_ms, attempt)
  VALUES ($1::bigint, $2, $3, $4, $5, $9::int)
)
UPDATE deliveries SET
  attempts = attempts + 1,
  state = $6,
  next_attempt_at = CASE WHEN $7::bigint IS NULL THEN next_attempt_at ELSE now() + $7::bigint * interval '1 millisecond' END,
  locked_until = CASE
    WHEN $6 <> 'pending' OR $7::bigint IS NOT NULL THEN NULL
    ELSE now() + $8::bigint * interval '1 millisecond' END,
  last_error = CASE WHEN $6 = 'delivered' THEN NULL ELSE $4 END,
  last_status = $3,
  updated_at = now(),
  delivered_at = CASE WHEN $6 = 'delivered' THEN now() ELSE delivered_at END
WHERE id = $1::bigint AND state = 'pending'`

export interface Attempt {
  /** The try's number, as its receiver saw it (DeliveryJob.attempt). */
  readonly attempt: number
  readonly outcome: AttemptOutcome
  readonly status: number | null
  readonly error: string | null
  readonly durationMs: number
}

export type NextState =
  | { readonly _tag: "Delivered" }
  | { readonly _tag: "Failed" }
  /** Tried again now, in this claim: the lease is extended by `leaseMs`. */
  | { readonly _tag: "RetryNow"; readonly leaseMs: number }
  /** Released until `delayMs` from now. */
  | { readonly _tag: "RetryLater"; readonly delayMs: number }

export interface DeliveryRow {
  readonly id: string
  readonly channel: DeliveryChannel
  readonly state: DeliveryState
  readonly eventId: string
  readonly eventType: string
  readonly recipientId: string | null
  readonly subscriptionId: string | null
  readonly attempts: number
  readonly nextAttemptAt: Date
  readonly lastError: string | null
  readonly lastStatus: number | null
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly deliveredAt: Date | null
}

export interface ChannelSummary {
  readonly channel: DeliveryChannel
  readonly pending: number
  readonly failed: number
  readonly delivered: number
  /** Seconds the oldest pending delivery has waited since it was created; null when none is pending. */
  readonly oldestPendingSeconds: number | null
}

export interface ListFilter {
  readonly state?: DeliveryState | undefined
  readonly channel?: DeliveryChannel | undefined
  /** Ids below this one (keyset, newest first). */
  readonly before?: string | undefined
  readonly limit: number
}

export const DELIVERY_CHANNELS: ReadonlyArray<DeliveryChannel> = ["email", "webhook"]

export const makeDeliveriesRepo = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const claim = (options: {
    readonly channel: DeliveryChannel
    readonly limit: number
    readonly perKey: number
    readonly excluded: ReadonlyArray<string>
    readonly leaseMs: number
  }) =>
    sql.unsafe<ClaimRow>(CLAIM_SQL, [
      options.channel,
      options.limit,
      [...options.excluded],
      Math.round(options.leaseMs),
      options.perKey
    ]).pipe(
      Effect.map((rows) =>
        rows.map((r): Claimed => ({
          job: {
            id: r.id,
            idempotencyKey: r.idempotencyKey,
            channel: r.channel,
            eventId: r.eventId,
            eventType: r.eventType,
            recipientId: r.recipientId,
            subscriptionId: r.subscriptionId,
            payload: r.payload,
            attempt: r.attempts + 1
          },
          round: r.rounds
        }))
      ),
      Effect.mapError(toError("Claiming deliveries failed"))
    )

  const record = (id: string, attempt: Attempt, next: NextState) => {
    const state: DeliveryState = next._tag === "Delivered" ? "delivered" : next._tag === "Failed" ? "failed" : "pending"
    return sql.unsafe(RECORD_SQL, [
      id,
      attempt.outcome,
      attempt.status,
      attempt.error,
      Math.max(0, Math.round(attempt.durationMs)),
      state,
      next._tag === "RetryLater" ? Math.round(next.delayMs) : null,
      next._tag === "RetryNow" ? Math.round(next.leaseMs) : 0,
      attempt.attempt
    ]).pipe(Effect.asVoid, Effect.mapError(toError("Recording a delivery attempt failed")))
  }

  /** Milliseconds until the next pending delivery of `channel` is due (0: now); null when none is pending. */
  const nextDueIn = (channel: DeliveryChannel) =>
    sql<{ ms: number | null }>`
      SELECT greatest(0, extract(epoch FROM min(greatest(next_attempt_at, coalesce(locked_until, next_attempt_at))) - now())
        * 1000)::float8 AS ms
      FROM deliveries WHERE channel = ${channel} AND state = 'pending'`.pipe(
      Effect.map((rows) => rows[0]?.ms ?? null),
      Effect.mapError(toError("Reading the next due delivery failed"))
    )

  /** Newest first. `deliveries.id`, not `id`, in the ORDER BY: that would be the text column selected here. */
  const list = (filter: ListFilter) =>
    sql<DeliveryRow>`
      SELECT id::text AS id, channel, state, event_id, event_type, recipient_id::text AS recipient_id,
        subscription_id::text AS subscription_id, attempts, next_attempt_at, last_error, last_status, created_at,
        updated_at, delivered_at
      FROM deliveries
      WHERE ${filter.state === undefined ? sql`true` : sql`state = ${filter.state}`}
        AND ${filter.channel === undefined ? sql`true` : sql`channel = ${filter.channel}`}
        AND ${filter.before === undefined ? sql`true` : sql`id < ${filter.before}::bigint`}
      ORDER BY deliveries.id DESC
      LIMIT ${filter.limit}`.pipe(Effect.mapError(toError("Listing deliveries failed")))

  const summary = sql<ChannelSummary>`
    SELECT c.channel,
      count(d.id) FILTER (WHERE d.state = 'pending')::int AS pending,
      count(d.id) FILTER (WHERE d.state = 'failed')::int AS failed,
      count(d.id) FILTER (WHERE d.state = 'delivered')::int AS delivered,
      extract(epoch FROM now() - min(d.created_at) FILTER (WHERE d.state = 'pending'))::float8 AS oldest_pending_seconds
    FROM unnest(ARRAY['email', 'webhook']) AS c(channel)
    LEFT JOIN deliveries d ON d.channel = c.channel
    GROUP BY c.channel ORDER BY c.channel`.pipe(Effect.mapError(toError("Summarising deliveries failed")))

  /**
   * Puts failed deliveries back to pending, due now, with a fresh run of
   * retries (their attempts so far stay in the log), and wakes the
   * dispatchers. `ids`, or every failed one (of `channel`, if given). Returns
   * the ids retried; an id that is not failed is left alone.
   */
  const retry = (
    target: { readonly ids: ReadonlyArray<string> } | { readonly channel?: DeliveryChannel | undefined },
    /** Who asked: a user's id (the dashboard), or null for an operator at the command line. */
    by: { readonly actorId: string | null; readonly via: "ops" | "cli" }
  ) =>
    sql.withTransaction(
      Effect.gen(function*() {
        const rows = "ids" in target
          ? yield* sql<{ id: string }>`
            UPDATE deliveries SET state = 'pending', rounds = 0, next_attempt_at = now(), locked_until = NULL,
              updated_at = now()
            WHERE state = 'failed' AND id = ANY(${[...target.ids]}::bigint[])
            RETURNING id::text AS id`
          : yield* sql<{ id: string }>`
            UPDATE deliveries SET state = 'pending', rounds = 0, next_attempt_at = now(), locked_until = NULL,
              updated_at = now()
            WHERE state = 'failed' AND ${target.channel === undefined ? sql`true` : sql`channel = ${target.channel}`}
            RETURNING id::text AS id`
        const ids = rows.map((r) => r.id)
        if (ids.length > 0) {
          yield* sql`SELECT pg_notify('opsdesk_deliveries', '')`
          // In the retry's own transaction: no audit row without the retry, nor a retry without its row.
          yield* auditInsert(sql, {
            actorId: by.actorId,
            action: "deliveries.retry",
            entity: "delivery",
            entityId: "ids" in target && target.ids.length === 1 ? target.ids[0]! : "all",
            changes: {
              retried: ids.length,
              via: by.via,
              ...("ids" in target ? { ids } : target.channel === undefined ? {} : { channel: target.channel })
            }
          })
        }
        return ids
      })
    ).pipe(Effect.mapError(toError("Retrying deliveries failed")))

  const attemptsOf = (id: string) =>
    sql<
      {
        attemptedAt: Date
        attempt: number | null
        outcome: AttemptOutcome
        status: number | null
        error: string | null
        durationMs: number
      }
    >`
      SELECT attempted_at, attempt, outcome, status, error, duration_ms FROM delivery_attempt_log
      WHERE delivery_id = ${id}::bigint ORDER BY attempted_at, id`.pipe(
      Effect.mapError(toError("Reading delivery attempts failed"))
    )

  return { claim, record, nextDueIn, list, summary, retry, attemptsOf } as const
})

export class DeliveriesRepo extends Effect.Service<DeliveriesRepo>()("OpsDesk/Notifications/DeliveriesRepo", {
  effect: makeDeliveriesRepo
}) {}
