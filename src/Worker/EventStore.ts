/**
 * The worker's database side: the watcher lookup for `message.sent`, and the
 * batch commit that claims events in `processed_events` and writes their
 * notifications (those the recipients policy lets through at claim time,
 * src/Notifications/Recipients.ts) and email deliveries in one transaction. A claimed event's effects commit with its
 * claim, so a crash at any point neither loses nor repeats them.
 *
 * The same statement checks what the worker must not take on trust: that the
 * entity each event names exists (`Plan.requires`; an event that fails it is
 * neither claimed nor acted on), and that an event id claimed before was
 * claimed with the same fingerprint (a copy: a duplicate) and not another (a
 * reused id: a conflict, reported with the fingerprint it was claimed with).
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { ELIGIBLE_SQL } from "../Notifications/Recipients.js"
import { PREPARED } from "../Store/Sql.js"
import { describeSqlError, isTransientSqlError } from "../Store/SqlState.js"
import type { MentionRow, NotificationRow, Plan, Watchers } from "./Handlers.js"

export class StoreError extends Data.TaggedError("StoreError")<{
  readonly message: string
  /** True when the database was unreachable (worth holding and retrying), false for a rejected statement. */
  readonly transient: boolean
  readonly cause?: unknown
}> {}

/** What one commit did with each event; an event in none of these is a duplicate (claimed before, same payload). */
export interface CommitResult {
  /** Claimed now, with their notifications written. */
  readonly claimed: ReadonlySet<string>
  /** Claimed before with another payload: event id -> the fingerprint of that claim. Nothing written. */
  readonly conflicts: ReadonlyMap<string, string>
  /** The entity they name does not exist. Nothing written. */
  readonly missing: ReadonlySet<string>
}

export class EventStore extends Context.Tag("OpsDesk/Worker/EventStore")<EventStore, {
  readonly watchers: (ticketIds: ReadonlyArray<string>) => Effect.Effect<Watchers, StoreError>
  /**
   * Claims each plan's event for `processor` (with its fingerprint) if the
   * entity it requires exists, and writes the notifications of those it
   * claimed, in one statement. Each event id once per call.
   */
  readonly commit: (processor: string, plans: ReadonlyArray<Plan>) => Effect.Effect<CommitResult, StoreError>
}>() {}

const toStoreError = (what: string) => (error: SqlError.SqlError) =>
  new StoreError({
    message: `${what}: ${describeSqlError(error)}`,
    transient: isTransientSqlError(error),
    cause: error
  })

/**
 * `known`: the events whose entity exists. A claim is an upsert that changes
 * nothing: a new event id is inserted with its fingerprint and returned with
 * it; an id claimed before with another (non-null) fingerprint is "updated"
 * to its own value, only so that RETURNING hands back that fingerprint, which
 * then differs from the event's (a conflict); a copy (same fingerprint, or a
 * claim made before fingerprints) returns nothing: a duplicate. DO UPDATE,
 * unlike DO NOTHING, waits for and sees a claim a concurrent transaction
 * commits, so a conflict is reported even then.
 */
const COMMIT_SQL = `${PREPARED}
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $14::uuid[])
    AS i(event_id, event_type, fingerprint, ticket_id, owner_id, message_id, author_id, actor_id)
), known AS (
  -- One primary-key probe per event (a LATERAL union is never flattened). EXISTS under a CASE was planned as a
  -- hashed subplan that read the whole tickets table for every batch.
  -- The ticket's owner comes along for the recipients policy (ELIGIBLE_SQL), which would otherwise join tickets again.
  SELECT i.*, found.ticket_owner FROM input i
  CROSS JOIN LATERAL (
    SELECT t.owner_id AS ticket_owner FROM tickets t
    WHERE i.message_id IS NULL AND t.id = i.ticket_id AND t.owner_id = i.owner_id
    UNION ALL
    SELECT t.owner_id FROM messages m JOIN tickets t ON t.id = m.ticket_id
    WHERE i.message_id IS NOT NULL AND m.id = i.message_id AND m.ticket_id = i.ticket_id AND m.author_id = i.author_id
  ) found
), upserted AS (
  INSERT INTO processed_events (event_id, event_type, processor_name, fingerprint)
  SELECT event_id, event_type, $8, fingerprint FROM known
  ON CONFLICT (event_id, processor_name) DO UPDATE SET fingerprint = processed_events.fingerprint
    WHERE processed_events.fingerprint <> EXCLUDED.fingerprint
  RETURNING event_id, fingerprint
), outcome AS (
  SELECT u.event_id, u.fingerprint = k.fingerprint AS claimed, u.fingerprint
  FROM upserted u JOIN known k USING (event_id)
), claimed_events AS (
  SELECT k.event_id, k.event_type, k.ticket_id, k.ticket_owner, k.actor_id FROM known k JOIN outcome o USING (event_id)
  WHERE o.claimed
), direct_input AS (
  SELECT * FROM unnest($9::text[], $10::text[], $11::uuid[], $12::text[], $15::text[], $13::text[], $16::text[],
    $17::text[], $18::text[]) AS n(event_id, event_type, recipient_id, channel, reason, body, subject, text, html)
), mention_input AS (
  SELECT m.*, 'notice'::text AS reason
  FROM unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[])
    AS m(event_id, username, channel, body, subject, text, html)
), eligible AS (
  -- Each notification's id is drawn here, so its email delivery below can name it without joining the inserted
  -- rows back to these (a join of two CTE scans is planned as a nested loop: quadratic in the batch).
  SELECT nextval('notifications_id_seq'::regclass) AS id, x.* FROM (${ELIGIBLE_SQL}
  ) x
), notified AS (
  INSERT INTO notifications (id, event_id, event_type, recipient_id, channel, body)
  SELECT id, event_id, event_type, recipient_id, channel, body FROM eligible
), emailed AS (
  -- Email deliveries (src/Notifications/Dispatcher.ts sends them): one per email notification whose user has an
  -- address. The key is sha256(event_id|email|recipient_id): the intent once, however often it is planned.
  INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, notification_id, recipient_id, payload)
  SELECT encode(sha256(convert_to(e.event_id || '|email|' || e.recipient_id::text, 'UTF8')), 'hex'), 'email',
    e.event_id, e.event_type, e.id, e.recipient_id,
    json_build_object('to', e.email, 'subject', e.subject, 'text', e.text, 'html', e.html)
  FROM eligible e
  WHERE e.channel = 'email' AND e.email IS NOT NULL
  ON CONFLICT (idempotency_key) DO NOTHING
), webhooked AS (
  -- Webhook deliveries (src/Webhooks/Channel.ts sends them): one per claimed event and active subscription of its
  -- type, with the event's envelope ($26). The key, sha256(event_id|webhook|subscription_id), is the webhook-id.
  INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, subscription_id, payload)
  SELECT encode(sha256(convert_to(c.event_id || '|webhook|' || s.id::text, 'UTF8')), 'hex'), 'webhook',
    c.event_id, c.event_type, s.id, w.envelope::json
  FROM claimed_events c
  JOIN unnest($1::text[], $26::text[]) AS w(event_id, envelope) USING (event_id)
  JOIN webhook_subscriptions s ON s.active AND s.event_types @> ARRAY[c.event_type]
  ON CONFLICT (idempotency_key) DO NOTHING
)
SELECT event_id, CASE WHEN claimed THEN 'claimed' ELSE 'conflict' END AS outcome, fingerprint FROM outcome
UNION ALL
SELECT event_id, 'missing', NULL FROM input WHERE event_id NOT IN (SELECT event_id FROM known)`

interface OutcomeRow {
  readonly eventId: string
  readonly outcome: "claimed" | "conflict" | "missing"
  readonly fingerprint: string | null
}

const toResult = (rows: ReadonlyArray<OutcomeRow>): CommitResult => {
  const claimed = new Set<string>()
  const conflicts = new Map<string, string>()
  const missing = new Set<string>()
  for (const row of rows) {
    if (row.outcome === "claimed") claimed.add(row.eventId)
    else if (row.outcome === "conflict") conflicts.set(row.eventId, row.fingerprint ?? "")
    else missing.add(row.eventId)
  }
  return { claimed, conflicts, missing }
}

const ticketOf = (p: Plan) => p.requires.ticketId
const ownerOf = (p: Plan) => p.requires._tag === "Ticket" ? p.requires.ownerId : null
const messageOf = (p: Plan) => p.requires._tag === "Message" ? p.requires.messageId : null
const authorOf = (p: Plan) => p.requires._tag === "Message" ? p.requires.authorId : null

export const EventStoreLive = Layer.effect(
  EventStore,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return EventStore.of({
      watchers: (ticketIds) => {
        if (ticketIds.length === 0) return Effect.succeed(new Map())
        const ids = [...new Set(ticketIds)]
        return sql<{ ticketId: string; userId: string }>`
          SELECT id AS ticket_id, owner_id AS user_id FROM tickets WHERE id IN ${sql.in(ids)}
          UNION SELECT id, assignee_id FROM tickets WHERE id IN ${sql.in(ids)} AND assignee_id IS NOT NULL
          UNION SELECT ticket_id, author_id FROM messages WHERE ticket_id IN ${sql.in(ids)}`.pipe(
          Effect.map((rows) => {
            const map = new Map<string, Array<string>>()
            for (const row of rows) {
              const list = map.get(row.ticketId) ?? []
              list.push(row.userId)
              map.set(row.ticketId, list)
            }
            return map as Watchers
          }),
          Effect.mapError(toStoreError("Watcher lookup failed"))
        )
      },
      commit: (processor, plans) => {
        if (plans.length === 0) return Effect.succeed(toResult([]))
        const notifications: Array<NotificationRow> = plans.flatMap((p) => p.notifications)
        const mentions: Array<MentionRow> = plans.flatMap((p) => p.mentions)
        // One statement, so one implicit transaction and one round trip: the entity checks, the
        // claims, and the notifications of exactly the events it claimed.
        return sql.unsafe<OutcomeRow>(COMMIT_SQL, [
          plans.map((p) => p.event.eventId),
          plans.map((p) => p.event.event),
          plans.map((p) => p.fingerprint),
          plans.map(ticketOf),
          plans.map(ownerOf),
          plans.map(messageOf),
          plans.map(authorOf),
          processor,
          notifications.map((n) => n.eventId),
          notifications.map((n) => n.eventType),
          notifications.map((n) => n.recipientId),
          notifications.map((n) => n.channel),
          notifications.map((n) => n.body),
          plans.map((p) => p.actorId),
          notifications.map((n) => n.reason),
          notifications.map((n) => n.email?.subject ?? null),
          notifications.map((n) => n.email?.text ?? null),
          notifications.map((n) => n.email?.html ?? null),
          mentions.map((m) => m.eventId),
          mentions.map((m) => m.username),
          mentions.map((m) => m.channel),
          mentions.map((m) => m.body),
          mentions.map((m) => m.email?.subject ?? null),
          mentions.map((m) => m.email?.text ?? null),
          mentions.map((m) => m.email?.html ?? null),
          plans.map((p) => JSON.stringify(p.event))
        ]).pipe(
          Effect.map(toResult),
          Effect.mapError(toStoreError("Commit failed"))
        )
      }
    })
  })
)
