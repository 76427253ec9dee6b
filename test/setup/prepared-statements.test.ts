/**
 * Prepared statements (src/Store/Sql.ts `PREPARED`): the statements marked
 * hot run as named prepared statements, each under one name on a connection
 * however often and with whatever values it runs; unmarked ones never; none
 * with DATABASE_PREPARED_STATEMENTS=false. A pool of one connection, so every
 * statement of a test runs on the connection `pg_prepared_statements` reports.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Config, Effect, Either, Layer } from "effect"
import { makeEvent, type TicketCreated } from "../../src/Domain/Events.js"
import { appendEvent, RelayWake } from "../../src/Outbox/Outbox.js"
import { pgPool, PREPARED, runMigrations } from "../../src/Store/Sql.js"
import { TicketsRepo } from "../../src/Tickets/Repo.js"
import { EventStore, EventStoreLive } from "../../src/Worker/EventStore.js"
import { plan } from "../../src/Worker/Handlers.js"
import { withEntities } from "../support/Entities.js"
import { configFrom, ticketCreated, waitUntil } from "../support/Env.js"

const onePool = (prepared: boolean) =>
  Layer.effectDiscard(runMigrations).pipe(
    Layer.provideMerge(pgPool(Config.succeed(1))),
    Layer.provide(Layer.setConfigProvider(configFrom({ DATABASE_PREPARED_STATEMENTS: String(prepared) })))
  )

const preparedOnConnection = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ name: string; statement: string }>`SELECT name, statement FROM pg_prepared_statements ORDER BY name`
)

/** A ticket, its owner made first, inserted as POST /v1/tickets does; deleted (with its rows) at the end of the scope. */
const postTicket = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const ownerId = crypto.randomUUID()
  yield* sql`INSERT INTO users (id, username, password_hash, role) VALUES (${ownerId}, ${`prep-${ownerId}`}, 'x', 'customer')`
  const now = new Date().toISOString()
  const ticket = {
    id: crypto.randomUUID(),
    title: "Prepared",
    description: "a marked statement",
    status: "open" as const,
    priority: "medium" as const,
    ownerId,
    assigneeId: null,
    createdAt: now,
    updatedAt: now
  }
  const event = makeEvent<TicketCreated>("ticket.created", { ...ticket, createdAt: now })
  yield* Effect.addFinalizer(() =>
    Effect.all([
      sql`DELETE FROM outbox WHERE event_id = ${event.eventId}::uuid`,
      sql`DELETE FROM audit_log WHERE actor_id = ${ownerId}`,
      sql`DELETE FROM tickets WHERE id = ${ticket.id}`,
      sql`DELETE FROM users WHERE id = ${ownerId}`
    ], { discard: true }).pipe(Effect.orDie)
  )
  const repo = yield* TicketsRepo
  yield* repo.insertWithEvent(ticket, event)
  return { ticket, event }
})

const claim = (count: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const events = Array.from({ length: count }, () => ticketCreated())
    yield* withEntities(events)
    yield* Effect.addFinalizer(() =>
      Effect.all([
        sql`DELETE FROM deliveries WHERE event_id IN ${sql.in(events.map((e) => e.eventId))}`,
        sql`DELETE FROM notifications WHERE event_id IN ${sql.in(events.map((e) => e.eventId))}`,
        sql`DELETE FROM processed_events WHERE event_id IN ${sql.in(events.map((e) => e.eventId))}`
      ], { discard: true }).pipe(Effect.orDie)
    )
    const store = yield* EventStore
    const result = yield* store.commit("prepared-test", events.map((e) => plan(e, new Map())))
    expect(result.claimed.size).toBe(count)
  })

describe("prepared statements", () => {
  it.live("the ticket insert, the worker's claim and an appended event's statements are one named statement each, whatever their values", () =>
    Effect.gen(function*() {
      yield* postTicket
      yield* postTicket
      yield* claim(1)
      yield* claim(3)
      // The event a ticket update, a status change or a message appends, and the NOTIFY that wakes the relay after
      // the commit (sent by RelayWake's own fiber: once or twice here, as the two wake-ups may coalesce).
      const sql = yield* SqlClient.SqlClient
      const appended = [ticketCreated(), ticketCreated()]
      yield* Effect.addFinalizer(() =>
        sql`DELETE FROM outbox WHERE event_id::text IN ${sql.in(appended.map((e) => e.eventId))}`.pipe(Effect.orDie)
      )
      const relay = yield* RelayWake
      yield* Effect.forEach(appended, (event) => Effect.zipRight(sql.withTransaction(appendEvent(event)), relay.wake), {
        discard: true
      })
      yield* waitUntil(
        "the relay's wake-up sent",
        Effect.map(preparedOnConnection, (named) => named.some((s) => s.statement.includes("pg_notify"))),
        "10 seconds"
      )
      // Unmarked: never prepared.
      yield* sql`SELECT count(*) FROM tickets WHERE id = ${crypto.randomUUID()}`
      const named = yield* preparedOnConnection
      expect(named.every((s) => s.statement.startsWith(PREPARED))).toBe(true)
      expect(named.filter((s) => s.statement.includes("INSERT INTO tickets"))).toHaveLength(1)
      // No write notifies inside its own transaction (PostgreSQL would serialize their commits): only RelayWake's does.
      expect(named.filter((s) => s.statement.includes("pg_notify") && s.statement.includes("INSERT"))).toEqual([])
      expect(named.filter((s) => s.statement.includes("INSERT INTO processed_events"))).toHaveLength(1)
      expect(named.filter((s) => /^\/\* prepared \*\/ INSERT INTO outbox/.test(s.statement))).toHaveLength(1)
      expect(named.filter((s) => /^\/\* prepared \*\/ SELECT pg_notify/.test(s.statement))).toHaveLength(1)
      expect(named).toHaveLength(4)
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Layer.mergeAll(TicketsRepo.Default, EventStoreLive, RelayWake.Default).pipe(Layer.provideMerge(onePool(true)))
      )
    ))

  it.live("a marked statement that fails runs again afterwards, still prepared", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { event, ticket } = yield* postTicket
      const repo = yield* TicketsRepo
      // The same ticket id again: the primary key refuses it, after the statement was prepared.
      const again = yield* Effect.either(repo.insertWithEvent(ticket, { ...event, eventId: crypto.randomUUID() }))
      expect(Either.isLeft(again)).toBe(true)
      yield* postTicket
      const [{ n }] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM tickets WHERE title = 'Prepared'`
      expect(n).toBeGreaterThanOrEqual(2)
      expect((yield* preparedOnConnection).filter((s) => s.statement.includes("INSERT INTO tickets"))).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(TicketsRepo.Default.pipe(Layer.provideMerge(onePool(true))))))

  it.live("with DATABASE_PREPARED_STATEMENTS=false nothing is prepared", () =>
    Effect.gen(function*() {
      yield* postTicket
      yield* claim(2)
      expect(yield* preparedOnConnection).toEqual([])
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(TicketsRepo.Default, EventStoreLive).pipe(Layer.provideMerge(onePool(false))))
    ))

  it.live("marked texts beyond the cap still run, unnamed: a varying marked text cannot grow the server's memory", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      for (let i = 0; i < 80; i++) {
        const [{ n }] = yield* sql.unsafe<{ n: number }>(`${PREPARED}SELECT $1::int + ${i} AS n`, [1])
        expect(n).toBe(1 + i)
      }
      expect((yield* preparedOnConnection).length).toBeLessThanOrEqual(64)
    }).pipe(Effect.scoped, Effect.provide(onePool(true))))
})
