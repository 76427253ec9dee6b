/**
 * SQL for webhook subscriptions and their deliveries' log. Database failures
 * are defects here (a 500). Every admin change commits its audit row with it
 * (Store/Audit.ts), and so does an automatic disabling (actor NULL: OpsDesk).
 * Secrets leave this module only towards the signer and in the one answer
 * that shows a new secret; audit rows never hold them.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { CURSOR_TS, type Position } from "../Kit/Pagination.js"
import { traced } from "../Observability/Span.js"
import { auditInsert, recordAudit } from "../Store/Audit.js"
import type { WebhookDelivery, WebhookEventType, WebhookSubscription } from "./Domain.js"
import { WebhookNotFound } from "./Errors.js"

interface SubscriptionRow {
  readonly id: string
  readonly url: string
  readonly eventTypes: ReadonlyArray<WebhookEventType>
  readonly description: string
  readonly active: boolean
  readonly consecutiveFailures: number
  readonly disabledAt: Date | null
  readonly disabledReason: string | null
  readonly previousExpiresAt: Date | null
  readonly createdAt: Date
  readonly updatedAt: Date
}

interface ListedRow extends SubscriptionRow {
  readonly cursorTs: string
}

/** What the sender needs of a subscription: where, with which secrets (newest first), and whether at all. */
export interface DeliveryTarget {
  readonly id: string
  readonly url: string
  readonly active: boolean
  readonly disabledReason: string | null
  readonly secrets: ReadonlyArray<string>
}

export interface NewSubscription {
  readonly url: string
  readonly eventTypes: ReadonlyArray<WebhookEventType>
  readonly description: string
  readonly active: boolean
  readonly secret: string
}

export interface SubscriptionChange {
  readonly url?: string | undefined
  readonly eventTypes?: ReadonlyArray<WebhookEventType> | undefined
  readonly description?: string | undefined
  readonly active?: boolean | undefined
}

export interface ListFilter {
  readonly active?: boolean | undefined
  readonly after?: Position | undefined
  readonly limit: number
}

/** A delivery log position: its `created_at` (as CURSOR_TS renders it) and its id (digits). */
export interface DeliveryPosition {
  readonly ts: string
  readonly id: string
}

export interface DeliveryFilter {
  readonly subscriptionId: string
  readonly state?: "pending" | "delivered" | "failed" | undefined
  readonly after?: DeliveryPosition | undefined
  readonly limit: number
}

export interface DeliveryRow {
  readonly id: string
  readonly eventId: string
  readonly eventType: string
  readonly idempotencyKey: string
  readonly state: "pending" | "delivered" | "failed"
  readonly attempts: number
  readonly lastStatus: number | null
  readonly lastError: string | null
  readonly nextAttemptAt: Date | null
  readonly createdAt: Date
  readonly deliveredAt: Date | null
  readonly attemptLog: ReadonlyArray<WebhookDelivery["attemptLog"][number]>
  readonly cursorTs: string
}

/** The record of one test-fire: a delivery that is never retried, with its single attempt. */
export interface TestDelivery {
  readonly subscriptionId: string
  readonly eventId: string
  readonly idempotencyKey: string
  readonly payload: unknown
  readonly delivered: boolean
  readonly status: number | null
  readonly error: string | null
  readonly durationMs: number
}

const COLUMNS =
  "id, url, event_types, description, active, consecutive_failures, disabled_at, disabled_reason, previous_expires_at, created_at, updated_at"

export const toSubscription = (row: SubscriptionRow): WebhookSubscription => ({
  id: row.id,
  url: row.url,
  eventTypes: row.eventTypes,
  description: row.description,
  active: row.active,
  consecutiveFailures: row.consecutiveFailures,
  disabledAt: row.disabledAt?.toISOString() ?? null,
  disabledReason: row.disabledReason,
  previousSecretExpiresAt: row.previousExpiresAt !== null && row.previousExpiresAt.getTime() > Date.now()
    ? row.previousExpiresAt.toISOString()
    : null,
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString()
})

export const toDelivery = (row: DeliveryRow): WebhookDelivery => ({
  id: row.id,
  eventId: row.eventId,
  eventType: row.eventType,
  idempotencyKey: row.idempotencyKey,
  state: row.state,
  attempts: row.attempts,
  lastStatus: row.lastStatus,
  lastError: row.lastError,
  nextAttemptAt: row.state === "pending" ? row.nextAttemptAt?.toISOString() ?? null : null,
  createdAt: row.createdAt.toISOString(),
  deliveredAt: row.deliveredAt?.toISOString() ?? null,
  attemptLog: row.attemptLog
})

/** At most this many attempts per delivery in the log (the latest ones). */
const ATTEMPT_LOG_LIMIT = 50

/** The fields of a change that differ from the row, as `{ field: { from, to } }` for the audit row. */
const diff = (row: SubscriptionRow, change: SubscriptionChange) => {
  const changes: Record<string, { readonly from: unknown; readonly to: unknown }> = {}
  if (change.url !== undefined && change.url !== row.url) changes.url = { from: row.url, to: change.url }
  if (change.eventTypes !== undefined && change.eventTypes.join() !== row.eventTypes.join()) {
    changes.eventTypes = { from: row.eventTypes, to: change.eventTypes }
  }
  if (change.description !== undefined && change.description !== row.description) {
    changes.description = { from: row.description, to: change.description }
  }
  if (change.active !== undefined && change.active !== row.active) {
    changes.active = { from: row.active, to: change.active }
  }
  return changes
}

export class WebhooksRepo extends Effect.Service<WebhooksRepo>()("OpsDesk/Webhooks/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)
    const cursorTs = sql.literal(CURSOR_TS)

    const insert = (input: NewSubscription, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const [row] = yield* sql<SubscriptionRow>`INSERT INTO webhook_subscriptions
              (url, event_types, description, active, secret, created_by)
            VALUES (${input.url}, ${input.eventTypes}::text[], ${input.description}, ${input.active}, ${input.secret},
              ${actorId})
            RETURNING ${columns}`
          const subscription = toSubscription(row!)
          yield* recordAudit({
            actorId,
            action: "webhook.create",
            entity: "webhook_subscription",
            entityId: subscription.id,
            changes: {
              url: subscription.url,
              eventTypes: subscription.eventTypes,
              description: subscription.description,
              active: subscription.active
            }
          })
          return subscription
        })
      ).pipe(Effect.orDie, traced("WebhooksRepo.insert"))

    const findById = (id: string) =>
      sql<SubscriptionRow>`SELECT ${columns} FROM webhook_subscriptions WHERE id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toSubscription)),
        Effect.orDie,
        traced("WebhooksRepo.findById")
      )

    /** Newest first; fetches one row more than the page to know whether another page follows. */
    const list = (filter: ListFilter) => {
      const where = [
        filter.active !== undefined ? sql`active = ${filter.active}` : undefined,
        filter.after !== undefined
          ? sql`(created_at, id) < (${filter.after.ts}::timestamptz, ${filter.after.id}::uuid)`
          : undefined
      ].filter((f) => f !== undefined)
      return sql<ListedRow>`SELECT ${columns}, ${cursorTs} AS cursor_ts FROM webhook_subscriptions
        ${where.length > 0 ? sql`WHERE ${sql.and(where)}` : sql``}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit + 1}`.pipe(
        Effect.orDie,
        traced("WebhooksRepo.list")
      )
    }

    /**
     * Applies a change with its audit row (only the fields that changed; none:
     * nothing is written). Re-activating also clears an automatic disabling
     * and the failure count, so the subscription starts afresh.
     */
    const update = (id: string, change: SubscriptionChange, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const [row] = yield* sql<SubscriptionRow>`SELECT ${columns} FROM webhook_subscriptions
            WHERE id = ${id} FOR UPDATE`
          if (row === undefined) return yield* Effect.fail(WebhookNotFound.of(id))
          const changes = diff(row, change)
          if (Object.keys(changes).length === 0) return toSubscription(row)
          const reactivated = change.active === true && !row.active
          const [updated] = yield* sql<SubscriptionRow>`UPDATE webhook_subscriptions SET
              url = ${change.url ?? row.url},
              event_types = ${change.eventTypes ?? row.eventTypes}::text[],
              description = ${change.description ?? row.description},
              active = ${change.active ?? row.active},
              ${reactivated ? sql`consecutive_failures = 0, disabled_at = NULL, disabled_reason = NULL,` : sql``}
              updated_at = now()
            WHERE id = ${id} RETURNING ${columns}`
          yield* recordAudit({
            actorId,
            action: "webhook.update",
            entity: "webhook_subscription",
            entityId: id,
            changes
          })
          return toSubscription(updated!)
        })
      ).pipe(Effect.catchTag("SqlError", Effect.die), traced("WebhooksRepo.update"))

    /** Deletes it with its audit row; its deliveries stay, unlinked (migration 0010). False when there was none. */
    const remove = (id: string, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const rows = yield* sql<{ readonly url: string }>`DELETE FROM webhook_subscriptions WHERE id = ${id}
            RETURNING url`
          const row = rows[0]
          if (row === undefined) return false
          yield* recordAudit({
            actorId,
            action: "webhook.delete",
            entity: "webhook_subscription",
            entityId: id,
            changes: { url: row.url }
          })
          return true
        })
      ).pipe(Effect.orDie, traced("WebhooksRepo.remove"))

    /**
     * A new secret; the current one keeps signing for `overlapSeconds` (0:
     * not at all). A secret already rotated out is dropped: at most two sign.
     */
    const rotateSecret = (id: string, secret: string, overlapSeconds: number, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const rows = yield* sql<{ readonly previousExpiresAt: Date | null }>`UPDATE webhook_subscriptions SET
              previous_secret = CASE WHEN ${overlapSeconds}::int > 0 THEN secret END,
              previous_expires_at = CASE WHEN ${overlapSeconds}::int > 0
                THEN now() + make_interval(secs => ${overlapSeconds}::int) END,
              secret = ${secret},
              updated_at = now()
            WHERE id = ${id} RETURNING previous_expires_at`
          const row = rows[0]
          if (row === undefined) return Option.none<Date | null>()
          yield* recordAudit({
            actorId,
            action: "webhook.secret_rotate",
            entity: "webhook_subscription",
            entityId: id,
            changes: { previousSecretExpiresAt: row.previousExpiresAt?.toISOString() ?? null }
          })
          return Option.some(row.previousExpiresAt)
        })
      ).pipe(Effect.orDie, traced("WebhooksRepo.rotateSecret"))

    const findTarget = (id: string) =>
      sql<{
        readonly id: string
        readonly url: string
        readonly active: boolean
        readonly disabledReason: string | null
        readonly secret: string
        readonly previousSecret: string | null
      }>`SELECT id, url, active, disabled_reason, secret,
          CASE WHEN previous_expires_at > now() THEN previous_secret END AS previous_secret
        FROM webhook_subscriptions WHERE id = ${id}`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row): DeliveryTarget => ({
            id: row.id,
            url: row.url,
            active: row.active,
            disabledReason: row.disabledReason,
            secrets: row.previousSecret === null ? [row.secret] : [row.secret, row.previousSecret]
          }))
        ),
        traced("WebhooksRepo.findTarget")
      )

    /** A delivered attempt: the run of failures ends (written only when there was one). */
    const recordSuccess = (id: string) =>
      sql`UPDATE webhook_subscriptions SET consecutive_failures = 0
        WHERE id = ${id} AND consecutive_failures <> 0`.pipe(
        Effect.asVoid,
        traced("WebhooksRepo.recordSuccess")
      )

    /**
     * A failed attempt: one more in the run; at `disableAfter` of them (or at
     * once with `disableNow`, a receiver's 410 Gone) the subscription is
     * disabled, with the reason and its audit row, in the same statement. A
     * row locked first (`FOR UPDATE` in `old`) tells whether this very
     * statement disabled it, so one run of failures writes one audit row.
     * True when it disabled the subscription.
     */
    const recordFailure = (id: string, reason: string, disableAfter: number, disableNow: boolean) => {
      const disabledReason = disableNow
        ? `disabled: ${reason}`
        : `disabled after ${disableAfter} failed attempts in a row; the last: ${reason}`
      const audit = auditInsert(sql, {
        actorId: null,
        action: "webhook.disable",
        entity: "webhook_subscription",
        entityId: sql`u.id::text`,
        changes: sql`jsonb_build_object('reason', u.disabled_reason, 'consecutiveFailures', u.consecutive_failures)`
      }, sql`u WHERE u.was_active AND NOT u.active`)
      return sql<{ readonly disabled: boolean }>`WITH old AS (
          SELECT id, active FROM webhook_subscriptions WHERE id = ${id} FOR UPDATE
        ), u AS (
          UPDATE webhook_subscriptions s SET
            consecutive_failures = s.consecutive_failures + 1,
            active = s.active AND NOT (${disableNow} OR s.consecutive_failures + 1 >= ${disableAfter}),
            disabled_at = CASE WHEN s.active AND (${disableNow} OR s.consecutive_failures + 1 >= ${disableAfter})
              THEN now() ELSE s.disabled_at END,
            disabled_reason = CASE WHEN s.active AND (${disableNow} OR s.consecutive_failures + 1 >= ${disableAfter})
              THEN ${disabledReason} ELSE s.disabled_reason END
          FROM old WHERE s.id = old.id
          RETURNING s.id, s.active, s.consecutive_failures, s.disabled_reason, old.active AS was_active
        ), a AS (${audit})
        SELECT (was_active AND NOT active) AS disabled FROM u`.pipe(
        Effect.map((rows) => rows[0]?.disabled === true),
        traced("WebhooksRepo.recordFailure")
      )
    }

    /** A test-fire's delivery and its one attempt, already settled, in one statement. */
    const recordTest = (test: TestDelivery) =>
      sql<{ readonly id: string }>`WITH d AS (
          INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, subscription_id, payload, state,
            attempts, rounds, last_error, last_status, delivered_at)
          VALUES (${test.idempotencyKey}, 'webhook', ${test.eventId}, 'webhook.test', ${test.subscriptionId},
            ${JSON.stringify(test.payload)}::json, ${test.delivered ? "delivered" : "failed"}, 1, 1, ${test.error},
            ${test.status}, ${test.delivered ? sql`now()` : sql`NULL`})
          RETURNING id
        ), a AS (
          INSERT INTO delivery_attempt_log (delivery_id, outcome, status, error, duration_ms, attempt)
          SELECT id, ${test.delivered ? "delivered" : "failed"}, ${test.status}, ${test.error}, ${test.durationMs}, 1
          FROM d
        )
        SELECT id::text AS id FROM d`.pipe(
        Effect.map((rows) => rows[0]!.id),
        Effect.orDie,
        traced("WebhooksRepo.recordTest")
      )

    /** Newest first, each with its latest attempts (oldest first); one row more than the page. */
    const listDeliveries = (filter: DeliveryFilter) => {
      const where = [
        sql`d.subscription_id = ${filter.subscriptionId}`,
        filter.state !== undefined ? sql`d.state = ${filter.state}` : undefined,
        filter.after !== undefined
          ? sql`(d.created_at, d.id) < (${filter.after.ts}::timestamptz, ${filter.after.id}::bigint)`
          : undefined
      ].filter((f) => f !== undefined)
      return sql<DeliveryRow>`SELECT d.id::text AS id, d.event_id, d.event_type, d.idempotency_key, d.state,
          d.attempts, d.last_status, d.last_error, d.next_attempt_at, d.created_at, d.delivered_at,
          ${sql.literal(CURSOR_TS.replace("created_at", "d.created_at"))} AS cursor_ts,
          COALESCE((
            SELECT json_agg(json_build_object(
              'attemptedAt', to_char(a.attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
              'outcome', a.outcome, 'status', a.status, 'error', a.error, 'durationMs', a.duration_ms
            ) ORDER BY a.attempted_at, a.id)
            FROM (
              SELECT * FROM delivery_attempt_log WHERE delivery_id = d.id
              ORDER BY attempted_at DESC, id DESC LIMIT ${ATTEMPT_LOG_LIMIT}
            ) a
          ), '[]'::json) AS attempt_log
        FROM deliveries d
        WHERE ${sql.and(where)}
        ORDER BY d.created_at DESC, d.id DESC LIMIT ${filter.limit + 1}`.pipe(
        Effect.orDie,
        traced("WebhooksRepo.listDeliveries")
      )
    }

    return {
      insert,
      findById,
      list,
      update,
      remove,
      rotateSecret,
      findTarget,
      recordSuccess,
      recordFailure,
      recordTest,
      listDeliveries
    } as const
  })
}) {}
