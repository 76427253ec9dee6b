/**
 * Retention against the real PostgreSQL: what it removes (only rows older
 * than each table's window, in batches), what it never removes (an
 * unpublished outbox row, a claim inside the dedupe window or newer than an
 * unpublished outbox row), `--dry-run` counting, and the worker's schedule.
 *
 * The "old" rows are 400 days old and the windows 300 days, so no row another
 * test wrote (all of them from today) is ever in play; every row of a test
 * carries its own marker and is removed at the end.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Metric } from "effect"
import { deleteExpiredNotifications } from "../../src/Retention/Repo.js"
import {
  removedTotal,
  RetentionScheduleLive,
  type RetentionSettings,
  runRetention
} from "../../src/Retention/Retention.js"
import { PgLive, runMigrations } from "../../src/Store/Sql.js"
import { configFrom, waitUntil } from "../support/Env.js"

const Db = Layer.effectDiscard(runMigrations).pipe(Layer.provideMerge(PgLive))

const DAY = 86_400_000
const settings = (batchSize: number): RetentionSettings => ({
  batchSize,
  batchPause: Duration.millis(1),
  outbox: Duration.days(300),
  processedEvents: Duration.days(300),
  notifications: Duration.days(300),
  deliveries: Duration.days(300),
  auditLog: Duration.days(300)
})

/** Rows of one test, told apart by `marker` (in event_type / action). */
const seed = (marker: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const at = (ageMs: number) => new Date(Date.now() - ageMs)
    const outbox = (ageMs: number, published: boolean, retry = false) =>
      sql`INSERT INTO outbox (event_id, event_type, envelope, created_at, published_at, retry_at, last_error)
          VALUES (${crypto.randomUUID()}, ${marker}, '{}', ${at(ageMs)}, ${published ? at(ageMs) : null},
                  ${retry ? at(ageMs) : null}, ${retry ? "unroutable" : null})`
    const claim = (ageMs: number) =>
      sql`INSERT INTO processed_events (event_id, event_type, processor_name, processed_at)
          VALUES (${crypto.randomUUID()}, ${marker}, 'retention-test', ${at(ageMs)})`
    const notification = (ageMs: number) =>
      sql`INSERT INTO notifications (event_id, event_type, recipient_id, channel, body, created_at)
          VALUES (${crypto.randomUUID()}, ${marker}, ${crypto.randomUUID()}, 'email', 'x', ${at(ageMs)})`
    const audit = (ageMs: number) =>
      sql`INSERT INTO audit_log (action, entity, entity_id, created_at) VALUES (${marker}, 'test', 'x', ${at(ageMs)})`
    /** A webhook delivery created `ageMs` ago, last changed `changedMs` ago, with `tries` rows in its attempt log. */
    const delivery = (
      ageMs: number,
      state: "pending" | "delivered" | "failed",
      options: { readonly changedMs?: number; readonly tries?: number; readonly lockedUntil?: Date } = {}
    ) =>
      Effect.gen(function*() {
        const [row] = yield* sql<{ id: string }>`INSERT INTO deliveries
            (idempotency_key, channel, event_id, event_type, payload, state, attempts, created_at, updated_at,
             next_attempt_at, locked_until)
          VALUES (${crypto.randomUUID()}, 'webhook', ${crypto.randomUUID()}, ${marker}, '{}', ${state},
                  ${options.tries ?? 0}, ${at(ageMs)}, ${at(options.changedMs ?? ageMs)}, ${at(ageMs)},
                  ${options.lockedUntil ?? null})
          RETURNING id::text AS id`
        for (let i = 0; i < (options.tries ?? 0); i++) {
          yield* sql`INSERT INTO delivery_attempt_log (delivery_id, attempted_at, outcome, duration_ms)
            VALUES (${row!.id}, ${at(options.changedMs ?? ageMs)}, ${i + 1 === options.tries ? "failed" : "retry"}, 5)`
        }
        return row!.id
      })
    return { outbox, claim, notification, audit, delivery, at }
  })

const counts = (marker: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{
        publishedOutbox: number
        unpublishedOutbox: number
        claims: number
        notifications: number
        deliveries: number
        attempts: number
        audit: number
      }>`
      SELECT
        (SELECT count(*)::int FROM outbox WHERE event_type = ${marker} AND published_at IS NOT NULL) AS published_outbox,
        (SELECT count(*)::int FROM outbox WHERE event_type = ${marker} AND published_at IS NULL) AS unpublished_outbox,
        (SELECT count(*)::int FROM processed_events WHERE event_type = ${marker}) AS claims,
        (SELECT count(*)::int FROM notifications WHERE event_type = ${marker}) AS notifications,
        (SELECT count(*)::int FROM deliveries WHERE event_type = ${marker}) AS deliveries,
        (SELECT count(*)::int FROM delivery_attempt_log l JOIN deliveries d ON d.id = l.delivery_id
          WHERE d.event_type = ${marker}) AS attempts,
        (SELECT count(*)::int FROM audit_log WHERE action = ${marker}) AS audit`.pipe(Effect.map((rows) => rows[0]!))
  )

const cleanUp = (marker: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql`DELETE FROM outbox WHERE event_type = ${marker}`,
      sql`DELETE FROM processed_events WHERE event_type = ${marker}`,
      sql`DELETE FROM notifications WHERE event_type = ${marker}`,
      sql`DELETE FROM deliveries WHERE event_type = ${marker}`,
      sql`DELETE FROM audit_log WHERE action = ${marker}`
    ], { discard: true }))

/** A test with its own marker, cleaned up whatever happens. */
const withMarker = <A, E>(body: (marker: string) => Effect.Effect<A, E, SqlClient.SqlClient>) => {
  const marker = `retention-test-${crypto.randomUUID()}`
  return body(marker).pipe(Effect.ensuring(Effect.orDie(cleanUp(marker))), Effect.provide(Db))
}

const removedOf = (report: { readonly tables: ReadonlyArray<{ readonly table: string; readonly removed: number }> }) =>
  Object.fromEntries(report.tables.map((t) => [t.table, t.removed]))

describe("retention", () => {
  it.live(
    "removes only the rows older than each window, oldest first, in batches",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          for (let i = 0; i < 25; i++) {
            yield* s.outbox(400 * DAY + i * 1000, true)
            yield* s.claim(400 * DAY + i * 1000)
            yield* s.notification(400 * DAY + i * 1000)
            yield* s.audit(400 * DAY + i * 1000)
          }
          for (let i = 0; i < 5; i++) {
            // Inside the window: a day short of it, and brand new.
            yield* s.outbox(i === 0 ? 299 * DAY : 0, true)
            yield* s.claim(i === 0 ? 299 * DAY : 0)
            yield* s.notification(i === 0 ? 299 * DAY : 0)
            yield* s.audit(i === 0 ? 299 * DAY : 0)
          }
          const report = yield* runRetention(settings(10))
          expect(removedOf(report)).toEqual({
            outbox: 25,
            processed_events: 25,
            notifications: 25,
            deliveries: 0,
            audit_log: 25
          })
          // 10 + 10 + 5: the short batch ends the table (deliveries: one empty batch).
          expect(report.tables.map((t) => t.batches)).toEqual([3, 3, 3, 1, 3])
          expect(report.claimsHeldBy).toBeNull()
          expect(yield* counts(marker)).toEqual({
            publishedOutbox: 5,
            unpublishedOutbox: 0,
            claims: 5,
            notifications: 5,
            deliveries: 0,
            attempts: 0,
            audit: 5
          })
          // A second run finds nothing.
          expect(removedOf(yield* runRetention(settings(10)))).toEqual({
            outbox: 0,
            processed_events: 0,
            notifications: 0,
            deliveries: 0,
            audit_log: 0
          })
        })
      ),
    120_000
  )

  it.live(
    "never removes an unpublished outbox row, however old (new, or returned as unroutable)",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          for (let i = 0; i < 7; i++) yield* s.outbox(500 * DAY, false)
          for (let i = 0; i < 3; i++) yield* s.outbox(500 * DAY, false, true)
          yield* s.outbox(500 * DAY, true)
          const report = yield* runRetention(settings(2))
          expect(report.tables.find((t) => t.table === "outbox")?.removed).toBe(1)
          expect(yield* counts(marker)).toMatchObject({ publishedOutbox: 0, unpublishedOutbox: 10 })
        })
      ),
    120_000
  )

  it.live(
    "keeps every claim inside the dedupe window, and those newer than an unpublished outbox row",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          yield* s.claim(450 * DAY)
          yield* s.claim(400 * DAY)
          yield* s.claim(300 * DAY - 60_000)
          yield* s.claim(DAY)
          // The relay has not published an event written 420 days ago: it may publish it (again) any time,
          // so the claims made since then stay.
          yield* s.outbox(420 * DAY, false)
          const held = yield* runRetention(settings(100))
          expect(held.tables.find((t) => t.table === "processed_events")?.removed).toBe(1)
          expect(held.claimsHeldBy?.getTime()).toBeCloseTo(Date.now() - 420 * DAY, -5)
          expect((yield* counts(marker)).claims).toBe(3)

          // Once it is published, the window alone decides.
          const sql = yield* SqlClient.SqlClient
          yield* sql`UPDATE outbox SET published_at = now() WHERE event_type = ${marker}`
          const free = yield* runRetention(settings(100))
          expect(free.tables.find((t) => t.table === "processed_events")?.removed).toBe(1)
          expect(free.claimsHeldBy).toBeNull()
          expect((yield* counts(marker)).claims).toBe(2)
        })
      ),
    120_000
  )

  it.live(
    "a notification whose failed delivery is retried while retention runs stays, with its now pending delivery",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const old = new Date(Date.now() - 400 * DAY)
          const [notification] = yield* sql<{ id: string }>`INSERT INTO notifications
              (event_id, event_type, recipient_id, channel, body, created_at)
            VALUES (${crypto.randomUUID()}, ${marker}, ${crypto.randomUUID()}, 'email', 'x', ${old})
            RETURNING id::text AS id`
          const [delivery] = yield* sql<{ id: string }>`INSERT INTO deliveries
              (idempotency_key, channel, event_id, event_type, payload, state, attempts, created_at, updated_at,
               next_attempt_at, notification_id)
            VALUES (${crypto.randomUUID()}, 'email', ${crypto.randomUUID()}, ${marker}, '{}', 'failed', 3,
                    ${old}, ${old}, ${old}, ${notification!.id})
            RETURNING id::text AS id`
          // An operator's retry, not yet committed when retention checks for pending deliveries.
          const release = yield* Deferred.make<void>()
          const retry = yield* sql.withTransaction(
            sql`UPDATE deliveries SET state = 'pending', updated_at = now() WHERE id = ${delivery!.id}`.pipe(
              Effect.zipRight(Deferred.await(release))
            )
          ).pipe(Effect.orDie, Effect.fork)
          yield* waitUntil(
            "the retry holds its row",
            Effect.map(
              Effect.orDie(sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND state = 'idle in transaction'
                  AND query LIKE 'UPDATE deliveries SET state%'`),
              (rows) => rows[0]!.n === 1
            )
          )
          const removal = yield* Effect.fork(deleteExpiredNotifications(new Date(Date.now() - 300 * DAY), 100))
          yield* waitUntil(
            "retention waits for the retry's row",
            Effect.map(
              Effect.orDie(sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%WITH picked%'`),
              (rows) => rows[0]!.n === 1
            )
          )
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(retry)
          yield* Fiber.join(removal)
          const left = yield* sql<{ state: string }>`SELECT d.state FROM deliveries d
            JOIN notifications n ON n.id = d.notification_id WHERE d.id = ${delivery!.id}`
          expect(left).toEqual([{ state: "pending" }])
          // Once it has settled again, the notification goes, its delivery with it.
          yield* sql`UPDATE deliveries SET state = 'failed' WHERE id = ${delivery!.id}`
          yield* deleteExpiredNotifications(new Date(Date.now() - 300 * DAY), 100)
          expect(yield* counts(marker)).toMatchObject({ notifications: 0, deliveries: 0 })
        })
      ),
    120_000
  )

  it.live(
    "settled deliveries go by their last change, with their attempt log, in batches; a pending one never",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          const sql = yield* SqlClient.SqlClient
          const gone: Array<string> = []
          for (let i = 0; i < 6; i++) gone.push(yield* s.delivery(400 * DAY + i * 1000, "delivered", { tries: 1 }))
          for (let i = 0; i < 5; i++) gone.push(yield* s.delivery(400 * DAY + i * 1000, "failed", { tries: 3 }))
          const kept = [
            // Pending however old: due now, waiting for a later try, or leased by a dispatcher.
            yield* s.delivery(500 * DAY, "pending", { tries: 2 }),
            yield* s.delivery(500 * DAY, "pending", { lockedUntil: new Date(Date.now() + 60_000) }),
            // Created long ago but settled inside the window (a failed one retried from the CLI, delivered lately).
            yield* s.delivery(400 * DAY, "delivered", { changedMs: 299 * DAY, tries: 2 }),
            yield* s.delivery(400 * DAY, "failed", { changedMs: DAY, tries: 1 }),
            // Inside the window.
            yield* s.delivery(299 * DAY, "delivered", { tries: 1 }),
            yield* s.delivery(0, "failed", { tries: 1 })
          ]
          const dry = yield* runRetention(settings(4), { dryRun: true })
          expect(removedOf(dry).deliveries).toBe(11)
          expect((yield* counts(marker)).deliveries).toBe(17)

          const report = yield* runRetention(settings(4))
          const table = report.tables.find((t) => t.table === "deliveries")!
          // 4 + 4 + 3: the short batch ends it.
          expect(table).toMatchObject({ removed: 11, batches: 3 })
          expect(yield* counts(marker)).toMatchObject({ deliveries: 6, attempts: 2 + 2 + 1 + 1 + 1 })
          const left = yield* sql<{ id: string }>`SELECT id::text AS id FROM deliveries WHERE event_type = ${marker}`
          expect(left.map((r) => r.id).sort()).toEqual([...kept].sort())
          const orphans = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM delivery_attempt_log
            WHERE delivery_id IN ${sql.in(gone)}`
          expect(orphans[0]!.n).toBe(0)
          expect(removedOf(yield* runRetention(settings(4))).deliveries).toBe(0)
        })
      ),
    120_000
  )

  it.live(
    "a dry run counts what would go and removes nothing",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          for (let i = 0; i < 4; i++) {
            yield* s.outbox(400 * DAY, true)
            yield* s.outbox(0, false)
            yield* s.claim(400 * DAY)
            yield* s.notification(400 * DAY)
            yield* s.audit(400 * DAY)
          }
          const before = yield* counts(marker)
          const report = yield* runRetention(settings(3), { dryRun: true })
          expect(report.dryRun).toBe(true)
          expect(removedOf(report)).toEqual({
            outbox: 4,
            processed_events: 4,
            notifications: 4,
            deliveries: 0,
            audit_log: 4
          })
          expect(yield* counts(marker)).toEqual(before)
        })
      ),
    120_000
  )

  it.live(
    "the worker's schedule runs it every RETENTION_INTERVAL, counts what it removed, and stops with its scope",
    () =>
      withMarker((marker) =>
        Effect.gen(function*() {
          const s = yield* seed(marker)
          const auditRemoved = removedTotal.pipe(Metric.tagged("table", "audit_log"))
          const before = (yield* Metric.value(auditRemoved)).count
          for (let i = 0; i < 6; i++) yield* s.audit(400 * DAY)
          yield* Effect.scoped(
            Effect.gen(function*() {
              yield* Layer.build(RetentionScheduleLive)
              yield* waitUntil(
                "the scheduled run removed the old audit rows",
                Effect.map(counts(marker), (c) => c.audit === 0)
              )
            })
          ).pipe(
            Effect.withConfigProvider(configFrom({
              RETENTION_INTERVAL: "100 millis",
              RETENTION_BATCH_SIZE: 2,
              RETENTION_OUTBOX: "300 days",
              RETENTION_PROCESSED_EVENTS: "300 days",
              RETENTION_NOTIFICATIONS: "300 days",
              RETENTION_DELIVERIES: "300 days",
              RETENTION_AUDIT_LOG: "300 days"
            }))
          )
          expect((yield* Metric.value(auditRemoved)).count - before).toBeGreaterThanOrEqual(6)
          // Its scope is closed: rows aged in now stay.
          yield* s.audit(400 * DAY)
          yield* Effect.sleep("500 millis")
          expect((yield* counts(marker)).audit).toBe(1)
        })
      ),
    120_000
  )
})
