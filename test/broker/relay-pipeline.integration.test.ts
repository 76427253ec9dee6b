/**
 * How the relay overlaps its batches, against the real outbox table and a
 * publisher whose confirms the test holds back:
 * - a backlog goes out two batches at a time: once a full batch is sent, the
 *   next is claimed and sent while the broker has not yet confirmed the first
 *   (and no third until one of them ends);
 * - under a stream of writes the next batch waits for the one in flight, and
 *   the rows written meanwhile go out together in it.
 * Either way each row is sent once, in outbox order.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Option, Ref, Scope } from "effect"
import pg from "pg"
import { BrokerError } from "../../src/Broker/Amqp.js"
import { Publisher, type PublishOutcome } from "../../src/Broker/Publisher.js"
import { FatalLive } from "../../src/Fatal.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import {
  commitEvents,
  configFrom,
  deleteEventRows,
  InfraLive,
  ticketCreated,
  unpublished,
  waitUntil
} from "../support/Env.js"

interface Sent {
  readonly ids: ReadonlyArray<string>
  readonly confirm: Deferred.Deferred<void>
}

/** A publisher that records each send and confirms it only when the test says so. */
const heldPublisher = Effect.gen(function*() {
  const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
  const layer = Layer.succeed(
    Publisher,
    Publisher.of({
      send: (messages) =>
        Effect.gen(function*() {
          const confirm = yield* Deferred.make<void>()
          yield* Ref.update(sent, (all) => [...all, { ids: messages.map((m) => String(m.options.messageId)), confirm }])
          return Effect.as(
            Deferred.await(confirm),
            messages.map((): PublishOutcome => ({ _tag: "Confirmed" }))
          )
        }),
      publishAll: () => Effect.fail(new BrokerError({ message: "not used by the relay" })),
      isConnected: Effect.succeed(true),
      node: Effect.succeed(Option.none())
    })
  )
  return { sent, layer }
})

const BATCH = 5

/** The relay until the test ends, or until the returned scope is closed (a stop). */
const startRelay = (publisher: Layer.Layer<Publisher>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    yield* Layer.buildWithScope(RelayLive.pipe(Layer.provide(Layer.merge(publisher, FatalLive))), scope).pipe(
      Effect.withConfigProvider(configFrom({ OUTBOX_BATCH_SIZE: BATCH, OUTBOX_POLL_INTERVAL_MS: 600_000 }))
    )
    return scope
  })

/** The ids of `mine` in the order the sends carried them (other rows of the shared database left out). */
const sentOf = (sent: ReadonlyArray<Sent>, mine: ReadonlyArray<string>) =>
  sent.flatMap((s) => s.ids).filter((id) => mine.includes(id))

/**
 * Rows another run left unpublished (an interrupted one: tests publish or delete what they write) would be
 * claimed into these batches and change their sizes: they are marked published first. Test files run one at a
 * time, so no other test's relay is waiting for them.
 */
const sweepLeftovers = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`UPDATE outbox SET published_at = now() WHERE published_at IS NULL`
)

const confirmAll = (sent: Ref.Ref<ReadonlyArray<Sent>>) =>
  Effect.flatMap(Ref.get(sent), (all) => Effect.forEach(all, (s) => Deferred.succeed(s.confirm, undefined)))

describe("outbox relay: batches in flight", () => {
  it.live("a backlog goes out two batches at a time, in outbox order, each row once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const events = Array.from({ length: 3 * BATCH }, () => ticketCreated())
      const ids = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() => deleteEventRows(ids))
      yield* sweepLeftovers
      const { layer, sent } = yield* heldPublisher

      // One transaction: three full batches waiting when the relay starts.
      yield* sql.withTransaction(Effect.forEach(events, (e) => appendEvent(e), { discard: true }))
      yield* startRelay(layer)

      // The first batch is full, so the second is sent before the first is confirmed.
      yield* waitUntil(
        "a second batch sent while the first waits for its confirms",
        Effect.map(Ref.get(sent), (s) => s.length >= 2),
        "10 seconds"
      )
      // Two in flight at most: the third waits for one of them to end.
      yield* Effect.sleep("300 millis")
      expect((yield* Ref.get(sent)).length).toBe(2)

      yield* Effect.flatMap(Ref.get(sent), (all) => Deferred.succeed(all[0]!.confirm, undefined))
      yield* waitUntil(
        "the third batch once the first ended",
        Effect.map(Ref.get(sent), (s) => s.length >= 3),
        "10 seconds"
      )
      yield* confirmAll(sent)
      yield* waitUntil("every row published", Effect.map(unpublished(ids), (n) => n === 0), "10 seconds")

      // Each row sent once, in the order it was written.
      expect(sentOf(yield* Ref.get(sent), ids)).toEqual(ids)
    }).pipe(Effect.scoped, Effect.provide(InfraLive)))

  it.live("under a stream of writes, the next batch waits for the one in flight and takes what came meanwhile", () =>
    Effect.gen(function*() {
      const events = Array.from({ length: 4 }, () => ticketCreated())
      const ids = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() => deleteEventRows(ids))
      yield* sweepLeftovers
      const { layer, sent } = yield* heldPublisher
      yield* startRelay(layer)

      const write = (i: number) => commitEvents([events[i]!])
      yield* write(0)
      yield* waitUntil(
        "the first write sent",
        Effect.map(Ref.get(sent), (s) => sentOf(s, ids).length === 1),
        "10 seconds"
      )

      // Three more writes, each its own transaction and wake-up, while the first batch is unconfirmed.
      yield* Effect.forEach([1, 2, 3], write, { discard: true })
      yield* Effect.sleep("300 millis")
      expect(sentOf(yield* Ref.get(sent), ids)).toEqual(ids.slice(0, 1))

      yield* confirmAll(sent)
      yield* waitUntil(
        "the other three sent",
        Effect.map(Ref.get(sent), (s) => sentOf(s, ids).length === 4),
        "10 seconds"
      )
      // Together, in one batch.
      const later = (yield* Ref.get(sent)).filter((s) => s.ids.some((id) => ids.slice(1).includes(id)))
      expect(later.length).toBe(1)
      expect(later[0]!.ids.filter((id) => ids.includes(id))).toEqual(ids.slice(1))

      yield* confirmAll(sent)
      yield* waitUntil("every row published", Effect.map(unpublished(ids), (n) => n === 0), "10 seconds")
      expect(sentOf(yield* Ref.get(sent), ids)).toEqual(ids)
    }).pipe(Effect.scoped, Effect.provide(InfraLive)))

  it.live("a relay stopped while its batch waits for confirms leaves the rows unpublished, unlocked, its transaction closed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const events = Array.from({ length: 3 }, () => ticketCreated())
      const ids = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() => deleteEventRows(ids))
      yield* sweepLeftovers
      const { layer, sent } = yield* heldPublisher
      yield* sql.withTransaction(Effect.forEach(events, (e) => appendEvent(e), { discard: true }))
      const scope = yield* startRelay(layer)
      yield* waitUntil("the batch sent", Effect.map(Ref.get(sent), (s) => sentOf(s, ids).length === 3), "10 seconds")
      yield* Scope.close(scope, Exit.void)

      // Asked on a connection of its own: the pool's could be the very one the batch left behind.
      const client = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const c = new pg.Client({ connectionString: process.env.DATABASE_URL })
          await c.connect()
          return c
        }),
        (c) => Effect.promise(() => c.end())
      )
      const count = (query: string, values: Array<unknown> = []) =>
        Effect.promise(() => client.query<{ n: number }>(query, values)).pipe(Effect.map((r) => r.rows[0]!.n))
      // No connection is left inside the batch's transaction...
      expect(
        yield* count(`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND state LIKE 'idle in transaction%'`)
      ).toBe(0)
      // ...nor a lock on its rows: another relay could take them at once.
      yield* Effect.promise(() => client.query("BEGIN"))
      expect(
        yield* count(
          `SELECT count(*)::int AS n FROM (SELECT id FROM outbox
             WHERE event_id::text = ANY($1::text[]) FOR UPDATE SKIP LOCKED) AS free`,
          [ids]
        )
      ).toBe(3)
      yield* Effect.promise(() => client.query("ROLLBACK"))
      expect(yield* unpublished(ids)).toBe(3)
    }).pipe(Effect.scoped, Effect.provide(InfraLive)))
})
