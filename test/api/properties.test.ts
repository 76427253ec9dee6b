/**
 * Properties through the real server and database:
 * (a) any sequence of status requests keeps a ticket in a legal state, and
 *     the outbox holds exactly one ticket.status_changed per accepted step;
 * (c) paging through any set of tickets (ties in created_at included)
 *     returns each exactly once, newest first, whatever the page size.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Arbitrary, Effect, FastCheck, Schema } from "effect"
import { TicketPriority, TicketStatus, TicketStatusChanged } from "../../src/Domain/Events.js"
import { canTransition, Ticket, TicketPage } from "../../src/Tickets/Domain.js"
import { decode, get, post } from "./support/Client.js"
import { makeFixtures, outboxRows } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

const status = Arbitrary.make(TicketStatus)
const priority = Arbitrary.make(TicketPriority)

const generatedTicket = FastCheck.record({
  // Few distinct instants, so equal created_at values (ties broken by id) are common.
  second: FastCheck.integer({ min: 0, max: 4 }),
  micro: FastCheck.integer({ min: 0, max: 2 }),
  status,
  priority
})

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("properties", (it) => {
  it.effect.prop(
    "(a) status requests in any order: always a legal state, one outbox event per accepted transition",
    { steps: FastCheck.array(status, { minLength: 1, maxLength: 8 }) },
    ({ steps }) =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const agent = yield* fx.user("agent")
        const ticket = decode(Ticket, yield* post("/v1/tickets", { title: "machine", description: "d" }, agent.token))
        let current: TicketStatus = "open"
        const accepted: Array<string> = []
        for (const to of steps) {
          const r = yield* post(`/v1/tickets/${ticket.id}/status`, { status: to }, agent.token)
          if (canTransition(current, to)) {
            expect(r.status).toBe(200)
            accepted.push(`${current}>${to}`)
            current = to
          } else {
            expect(r.status).toBe(409)
          }
          expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, agent.token)).status).toBe(current)
        }
        const events = (yield* outboxRows(ticket.id, "ticket.status_changed")).map((row) =>
          Schema.decodeUnknownSync(TicketStatusChanged)(row.envelope)
        )
        expect(events.map((e) => `${e.payload.from}>${e.payload.to}`)).toEqual(accepted)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 20 } }
  )

  it.effect.prop(
    "(c) keyset pagination returns every ticket exactly once, in (created_at DESC, id DESC) order",
    {
      tickets: FastCheck.array(generatedTicket, { maxLength: 25 }),
      limit: FastCheck.integer({ min: 1, max: 7 }),
      only: FastCheck.option(status, { nil: undefined })
    },
    ({ limit, only, tickets }) =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const sql = yield* SqlClient.SqlClient
        const owner = yield* fx.user("customer")
        const inserted: Array<{ id: string; at: string; status: TicketStatus }> = []
        for (const [i, t] of tickets.entries()) {
          const at = `2030-01-01T00:00:0${t.second}.00000${t.micro}Z`
          const [row] = yield* sql<
            { id: string }
          >`INSERT INTO tickets (title, description, status, priority, owner_id, created_at, updated_at)
            VALUES (${`generated ${i}`}, 'd', ${t.status}, ${t.priority}, ${owner.id}, ${at}::timestamptz, ${at}::timestamptz) RETURNING id`
          inserted.push({ id: row!.id, at, status: t.status })
        }
        const expected = inserted
          .filter((t) => only === undefined || t.status === only)
          .sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1))
          .map((t) => t.id)

        const seen: Array<string> = []
        let cursor: string | null = null
        let pages = 0
        do {
          const qs: URLSearchParams = new URLSearchParams({
            limit: String(limit),
            ...(only ? { status: only } : {}),
            ...(cursor ? { cursor } : {})
          })
          const page: TicketPage = decode(TicketPage, yield* get(`/v1/tickets?${qs}`, owner.token))
          expect(page.items.length).toBeLessThanOrEqual(limit)
          for (const t of page.items) seen.push(t.id)
          cursor = page.nextCursor
          pages++
        } while (cursor !== null && pages <= tickets.length + 1)
        expect(seen).toEqual(expected)
        expect(pages).toBe(Math.max(1, Math.ceil(expected.length / limit)))
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 25 } }
  )
})
