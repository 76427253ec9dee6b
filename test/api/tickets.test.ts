/**
 * Tickets end to end: creation with its audit and outbox rows, visibility per
 * role, filtered listings, edits (ticket.updated naming only what changed),
 * the status machine (ticket.status_changed, FOR UPDATE under concurrency),
 * and failed writes leaving no audit or outbox row behind.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TicketCreated, TicketStatusChanged, TicketUpdated } from "../../src/Domain/Events.js"
import { Ticket, TicketPage } from "../../src/Tickets/Domain.js"
import { call, decode, get, patch, post, problem } from "./support/Client.js"
import { auditRows, cleanupUsers, makeFixtures, outboxRows, type TestUser } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

const createTicket = (user: TestUser, body: Record<string, unknown> = {}) =>
  post("/v1/tickets", { title: "Printer on fire", description: "Floor 3", ...body }, user.token).pipe(
    Effect.map((r) => {
      expect(r.status, r.text).toBe(201)
      return decode(Ticket, r)
    })
  )

const setStatus = (user: TestUser, id: string, status: string) =>
  post(`/v1/tickets/${id}/status`, { status }, user.token)

const envelopes = <A, I>(schema: Schema.Schema<A, I>, id: string, type: string) =>
  Effect.map(outboxRows(id, type), (rows) => rows.map((r) => Schema.decodeUnknownSync(schema)(r.envelope)))

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("tickets", (it) => {
  it.scoped("POST creates an open ticket owned by the caller, with one audit row and one ticket.created outbox row", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const customer = yield* fx.user("customer")
      const r = yield* post("/v1/tickets", { title: "Test Ticket", description: "Testing messaging" }, customer.token)
      expect(r.status).toBe(201)
      const ticket = decode(Ticket, r)
      expect(Object.keys(r.body as object).sort()).toEqual(
        ["assigneeId", "createdAt", "description", "id", "ownerId", "priority", "status", "title", "updatedAt"]
      )
      expect(ticket).toMatchObject({
        title: "Test Ticket",
        description: "Testing messaging",
        status: "open",
        priority: "medium",
        ownerId: customer.id,
        assigneeId: null
      })
      expect(ticket.createdAt).toBe(ticket.updatedAt)

      const [event, ...more] = yield* envelopes(TicketCreated, ticket.id, "ticket.created")
      expect(more).toHaveLength(0)
      const { updatedAt: _updatedAt, ...payload } = ticket
      expect(event!.payload).toEqual(payload)
      expect(event!.occurredAt).toBe(ticket.createdAt)
      const [row] = yield* outboxRows(ticket.id)
      expect(row!.eventId).toBe(event!.eventId)
      expect(row!.publishedAt).toBeNull()

      const audit = yield* auditRows(ticket.id)
      expect(audit).toEqual([{
        actorId: customer.id,
        action: "ticket.create",
        entity: "ticket",
        entityId: ticket.id,
        changes: { title: "Test Ticket", description: "Testing messaging", priority: "medium", status: "open" }
      }])
    }))

  it.scoped("priority is optional; `normal` is accepted as an alias of medium", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const agent = yield* fx.user("agent")
      expect((yield* createTicket(agent, { priority: "urgent" })).priority).toBe("urgent")
      expect((yield* createTicket(agent, { priority: "normal" })).priority).toBe("medium")
      expect((yield* createTicket(agent, { description: "" })).description).toBe("")
    }))

  it.scoped("a create that fails in the database leaves no ticket, audit or outbox row", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const ghost = yield* fx.user("customer")
      yield* cleanupUsers([ghost.id]) // the token outlives its user: the insert hits the foreign key
      const r = yield* post("/v1/tickets", { title: "never stored", description: "x" }, ghost.token)
      expect(r.status).toBe(401)
      const sql = yield* SqlClient.SqlClient
      expect(yield* sql`SELECT 1 FROM tickets WHERE owner_id = ${ghost.id}`).toHaveLength(0)
      expect(yield* sql`SELECT 1 FROM audit_log WHERE actor_id = ${ghost.id}`).toHaveLength(0)
      expect(yield* sql`SELECT 1 FROM outbox WHERE envelope->'payload'->>'ownerId' = ${ghost.id}`).toHaveLength(0)
    }))

  it.scoped("GET /v1/tickets/:id: the owner and staff see it; another customer gets the same 404 as an unknown id", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const other = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const admin = yield* fx.user("admin")
      const ticket = yield* createTicket(owner)
      for (const user of [owner, agent, admin]) {
        const r = yield* get(`/v1/tickets/${ticket.id}`, user.token)
        expect(r.status, user.role).toBe(200)
        expect(decode(Ticket, r)).toEqual(ticket)
      }
      const hidden = yield* get(`/v1/tickets/${ticket.id}`, other.token)
      expect(hidden.status).toBe(404)
      expect(hidden.body).toEqual(problem(404, "NotFound", `ticket ${ticket.id} not found`))
      const unknownId = crypto.randomUUID()
      const unknown = yield* get(`/v1/tickets/${unknownId}`, other.token)
      expect(unknown.status).toBe(404)
      expect(unknown.body).toEqual(problem(404, "NotFound", `ticket ${unknownId} not found`))
      const malformed = yield* get("/v1/tickets/not-a-uuid", owner.token)
      expect(malformed.status).toBe(400)
      expect(malformed.body).toMatchObject({ _tag: "HttpApiDecodeError" })
    }))

  it.scoped("listings: customers see only their own tickets, staff see everyone's; filters combine", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const alice = yield* fx.user("customer")
      const bob = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const admin = yield* fx.user("admin")
      const a1 = yield* createTicket(alice, { priority: "high" })
      const a2 = yield* createTicket(alice, { priority: "low" })
      const b1 = yield* createTicket(bob, { priority: "high" })

      const aliceList = decode(TicketPage, yield* get("/v1/tickets?limit=100", alice.token))
      expect(aliceList.items.map((t) => t.id)).toEqual([a2.id, a1.id])
      expect(aliceList.nextCursor).toBeNull()
      const bobList = decode(TicketPage, yield* get("/v1/tickets", bob.token))
      expect(bobList.items.map((t) => t.id)).toEqual([b1.id])

      // Isolate the three tickets in the shared database by assigning them to a fresh agent.
      for (const t of [a1, a2, b1]) {
        expect((yield* patch(`/v1/tickets/${t.id}`, { assigneeId: agent.id }, admin.token)).status).toBe(200)
      }
      yield* setStatus(agent, a1.id, "in_progress")
      for (const staff of [agent, admin]) {
        const all = decode(TicketPage, yield* get(`/v1/tickets?assigneeId=${agent.id}`, staff.token))
        expect(all.items.map((t) => t.id)).toEqual([b1.id, a2.id, a1.id])
        const high = decode(TicketPage, yield* get(`/v1/tickets?assigneeId=${agent.id}&priority=high`, staff.token))
        expect(high.items.map((t) => t.id)).toEqual([b1.id, a1.id])
        const busy = decode(
          TicketPage,
          yield* get(`/v1/tickets?assigneeId=${agent.id}&priority=high&status=in_progress`, staff.token)
        )
        expect(busy.items.map((t) => t.id)).toEqual([a1.id])
      }
      // A customer's filters never widen the scope.
      const aliceByAgent = decode(TicketPage, yield* get(`/v1/tickets?assigneeId=${agent.id}`, alice.token))
      expect(aliceByAgent.items.map((t) => t.id)).toEqual([a2.id, a1.id])
    }))

  it.scoped("listing parameters are validated: bad limit, status, ids or cursor are 400", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const user = yield* fx.user("agent")
      for (
        const qs of [
          "limit=0",
          "limit=101",
          "limit=abc",
          "limit=1.5",
          "status=pending",
          "priority=normal",
          "assigneeId=nope",
          "limit=1&limit=2"
        ]
      ) {
        const r = yield* get(`/v1/tickets?${qs}`, user.token)
        expect(r.status, qs).toBe(400)
      }
      const garbage = Buffer.from("2024-02-31T00:00:00.000000Z|" + crypto.randomUUID()).toString("base64url")
      for (const cursor of ["zzz", "%%%", garbage, Buffer.from("hello").toString("base64url")]) {
        const r = yield* get(`/v1/tickets?cursor=${encodeURIComponent(cursor)}`, user.token)
        expect(r.status, cursor).toBe(400)
        expect(r.body).toEqual(problem(400, "ValidationError", "cursor is not valid", { field: "cursor" }))
      }
    }))

  it.scoped("a customer edits title, description and priority of their own ticket; ticket.updated names only what changed", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const ticket = yield* createTicket(owner, { priority: "low" })
      const r = yield* patch(`/v1/tickets/${ticket.id}`, {
        title: ticket.title,
        priority: "high",
        description: "Now floor 4"
      }, owner.token)
      expect(r.status).toBe(200)
      const updated = decode(Ticket, r)
      expect(updated).toMatchObject({ title: ticket.title, priority: "high", description: "Now floor 4" })
      expect(updated.updatedAt >= ticket.updatedAt).toBe(true)

      const [event, ...more] = yield* envelopes(TicketUpdated, ticket.id, "ticket.updated")
      expect(more).toHaveLength(0)
      expect(event!.payload).toEqual({
        id: ticket.id,
        ownerId: owner.id,
        assigneeId: null,
        changedFields: ["description", "priority"],
        updatedBy: owner.id,
        updatedAt: updated.updatedAt
      })
      const audit = (yield* auditRows(ticket.id)).filter((a) => a.action === "ticket.update")
      expect(audit).toEqual([{
        actorId: owner.id,
        action: "ticket.update",
        entity: "ticket",
        entityId: ticket.id,
        changes: { description: { from: "Floor 3", to: "Now floor 4" }, priority: { from: "low", to: "high" } }
      }])
    }))

  it.scoped("a patch that changes nothing answers 200 and emits nothing", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const ticket = yield* createTicket(owner)
      const r = yield* patch(`/v1/tickets/${ticket.id}`, { title: ticket.title, priority: "normal" }, owner.token)
      expect(r.status).toBe(200)
      expect(decode(Ticket, r)).toEqual(ticket)
      expect(yield* outboxRows(ticket.id, "ticket.updated")).toHaveLength(0)
      expect((yield* auditRows(ticket.id)).map((a) => a.action)).toEqual(["ticket.create"])
      const empty = yield* patch(`/v1/tickets/${ticket.id}`, {}, owner.token)
      expect(empty.status).toBe(400)
    }))

  it.scoped("customers may not assign (403) nor touch another customer's ticket (404)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const other = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = yield* createTicket(owner)
      const assign = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: agent.id }, owner.token)
      expect(assign.status).toBe(403)
      expect(assign.body).toMatchObject({ _tag: "Forbidden" })
      const unassign = yield* patch(`/v1/tickets/${ticket.id}`, { title: "x", assigneeId: null }, owner.token)
      expect(unassign.status).toBe(403)
      const foreign = yield* patch(`/v1/tickets/${ticket.id}`, { title: "mine now" }, other.token)
      expect(foreign.status).toBe(404)
      const foreignStatus = yield* setStatus(other, ticket.id, "closed")
      expect(foreignStatus.status).toBe(404)
      expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, owner.token))).toEqual(ticket)
      expect(yield* outboxRows(ticket.id, "ticket.updated")).toHaveLength(0)
    }))

  it.scoped("staff assign to agents and admins only; an invalid assignee is 400 and leaves no trace", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const admin = yield* fx.user("admin")
      const ticket = yield* createTicket(owner)

      for (const bad of [owner.id, crypto.randomUUID()]) {
        const r = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: bad, title: "also changed" }, agent.token)
        expect(r.status).toBe(400)
        expect(r.body).toMatchObject({ _tag: "ValidationError", field: "assigneeId" })
      }
      expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, agent.token)).title).toBe(ticket.title)
      expect(yield* outboxRows(ticket.id, "ticket.updated")).toHaveLength(0)
      expect((yield* auditRows(ticket.id)).map((a) => a.action)).toEqual(["ticket.create"])

      const toAgent = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: agent.id.toUpperCase() }, admin.token)
      expect(toAgent.status).toBe(200)
      expect(decode(Ticket, toAgent).assigneeId).toBe(agent.id)
      const same = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: agent.id }, admin.token)
      expect(same.status).toBe(200)
      const toAdmin = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: admin.id }, agent.token)
      expect(toAdmin.status).toBe(200)
      const none = yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: null }, agent.token)
      expect(decode(Ticket, none).assigneeId).toBeNull()

      const events = yield* envelopes(TicketUpdated, ticket.id, "ticket.updated")
      expect(events.map((e) => [e.payload.changedFields, e.payload.assigneeId, e.payload.updatedBy])).toEqual([
        [["assigneeId"], agent.id, admin.id],
        [["assigneeId"], admin.id, agent.id],
        [["assigneeId"], null, agent.id]
      ])
    }))

  it.scoped("staff move a ticket through the whole status machine; each step emits ticket.status_changed", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = yield* createTicket(owner)
      yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: agent.id }, agent.token)
      const path = ["in_progress", "resolved", "closed", "open", "in_progress", "resolved", "open"] as const
      for (const status of path) {
        const r = yield* setStatus(agent, ticket.id, status)
        expect(r.status, status).toBe(200)
        expect(decode(Ticket, r).status).toBe(status)
      }
      const events = yield* envelopes(TicketStatusChanged, ticket.id, "ticket.status_changed")
      expect(events.map((e) => `${e.payload.from}>${e.payload.to}`)).toEqual([
        "open>in_progress",
        "in_progress>resolved",
        "resolved>closed",
        "closed>open",
        "open>in_progress",
        "in_progress>resolved",
        "resolved>open"
      ])
      for (const e of events) {
        expect(e.payload).toMatchObject({ id: ticket.id, changedBy: agent.id, ownerId: owner.id, assigneeId: agent.id })
        expect(e.occurredAt).toBe(e.payload.changedAt)
      }
      const audit = (yield* auditRows(ticket.id)).filter((a) => a.action === "ticket.status_change")
      expect(audit.map((a) => a.changes)).toEqual(events.map((e) => ({ from: e.payload.from, to: e.payload.to })))
    }))

  it.scoped("any other transition, the same status included, is 409 and leaves no trace", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const ticket = yield* createTicket(admin)
      for (const status of ["open", "resolved", "closed"]) {
        const r = yield* setStatus(admin, ticket.id, status)
        expect(r.status, status).toBe(409)
        expect(r.body).toEqual(problem(409, "Conflict", `cannot change status from open to ${status}`))
      }
      const invalid = yield* setStatus(admin, ticket.id, "done")
      expect(invalid.status).toBe(400)
      expect(yield* outboxRows(ticket.id, "ticket.status_changed")).toHaveLength(0)
      expect((yield* auditRows(ticket.id)).map((a) => a.action)).toEqual(["ticket.create"])
    }))

  it.scoped("customers may only close a resolved ticket of theirs or reopen it", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = yield* createTicket(owner)
      const start = yield* setStatus(owner, ticket.id, "in_progress")
      expect(start.status).toBe(403)
      expect((yield* setStatus(owner, ticket.id, "closed")).status).toBe(409) // open → closed is not a transition
      yield* setStatus(agent, ticket.id, "in_progress")
      expect((yield* setStatus(owner, ticket.id, "resolved")).status).toBe(403)
      yield* setStatus(agent, ticket.id, "resolved")
      expect((yield* setStatus(owner, ticket.id, "closed")).status).toBe(200)
      expect((yield* setStatus(owner, ticket.id, "open")).status).toBe(200)
      const events = yield* envelopes(TicketStatusChanged, ticket.id, "ticket.status_changed")
      expect(events.map((e) => [e.payload.to, e.payload.changedBy])).toEqual([
        ["in_progress", agent.id],
        ["resolved", agent.id],
        ["closed", owner.id],
        ["open", owner.id]
      ])
    }))

  it.scoped("concurrent status changes from the same state: exactly one wins (SELECT ... FOR UPDATE)", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const agents = [
        yield* fx.user("agent"),
        yield* fx.user("agent"),
        yield* fx.user("agent"),
        yield* fx.user("agent")
      ]
      for (let round = 0; round < 5; round++) {
        const ticket = yield* createTicket(agents[0]!)
        const replies = yield* Effect.all(agents.map((a) => setStatus(a, ticket.id, "in_progress")), {
          concurrency: "unbounded"
        })
        expect(replies.map((r) => r.status).sort()).toEqual([200, 409, 409, 409])
        expect(yield* outboxRows(ticket.id, "ticket.status_changed")).toHaveLength(1)
      }
    }))

  it.scoped("writes on unknown or malformed ids: 404 and 400", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const unknown = crypto.randomUUID()
      expect((yield* patch(`/v1/tickets/${unknown}`, { title: "x" }, admin.token)).status).toBe(404)
      expect((yield* setStatus(admin, unknown, "in_progress")).status).toBe(404)
      expect((yield* patch("/v1/tickets/123", { title: "x" }, admin.token)).status).toBe(400)
      expect((yield* call("POST", "/v1/tickets/123/status", { token: admin.token, json: { status: "open" } })).status)
        .toBe(400)
    }))
})
