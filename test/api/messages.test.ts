/** Messages: posting (message.sent with exactly the seed's payload), access, validation, paging. */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Api } from "../../src/App/Api.js"
import { MessageSent, TicketCreated } from "../../src/Domain/Events.js"
import { Message, MessagePage } from "../../src/Messages/Domain.js"
import { Ticket } from "../../src/Tickets/Domain.js"
import { decode, get, post, problem } from "./support/Client.js"
import { auditRows, makeFixtures, outboxRows, PASSWORD, type TestUser } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

const createTicket = (user: TestUser) =>
  Effect.map(post("/v1/tickets", { title: "Help", description: "please" }, user.token), (r) => decode(Ticket, r))

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("messages", (it) => {
  it.scoped("the seed's flow through the typed client: login, create a ticket, send a message; both events are in the outbox", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const client = yield* HttpApiClient.make(Api)
      const { accessToken } = yield* client.auth.login({ payload: { username: admin.username, password: PASSWORD } })
      const authed = yield* HttpApiClient.make(Api, {
        transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(accessToken))
      })
      const ticket = yield* authed.tickets.createTicket({
        payload: { title: "Test Ticket", description: "Testing messaging" }
      })
      expect(ticket).toMatchObject({ ownerId: admin.id, status: "open" })
      const ticketId = ticket.id
      const message = yield* authed.messages.sendMessage({ payload: { ticketId, content: "Test message" } })
      expect(message).toMatchObject({ ticketId, authorId: admin.id, content: "Test message" })

      const [created] = yield* outboxRows(ticketId, "ticket.created")
      expect(Schema.decodeUnknownSync(TicketCreated)(created!.envelope).payload.title).toBe("Test Ticket")
      const [row, ...more] = yield* outboxRows(message.id, "message.sent")
      expect(more).toHaveLength(0)
      const envelope = row!.envelope as { payload: Record<string, unknown> }
      expect(Object.keys(envelope.payload).sort()).toEqual(["authorId", "content", "id", "sentAt", "ticketId"])
      const event = Schema.decodeUnknownSync(MessageSent)(row!.envelope)
      expect(event).toMatchObject({ event: "message.sent", eventId: row!.eventId })
      expect(event.payload).toEqual({
        id: message.id,
        ticketId,
        authorId: admin.id,
        content: "Test message",
        sentAt: message.createdAt
      })

      const audit = yield* auditRows(message.id)
      expect(audit).toEqual([{
        actorId: admin.id,
        action: "message.create",
        entity: "message",
        entityId: message.id,
        changes: { ticketId, content: "Test message" }
      }])
    }))

  it.scoped("customers post on their own tickets only; unknown or hidden tickets are 404 and leave nothing", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const other = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const ticket = yield* createTicket(owner)
      expect((yield* post("/v1/messages", { ticketId: ticket.id, content: "mine" }, owner.token)).status).toBe(201)
      expect((yield* post("/v1/messages", { ticketId: ticket.id, content: "staff reply" }, agent.token)).status).toBe(
        201
      )
      const hidden = yield* post("/v1/messages", { ticketId: ticket.id, content: "intruder" }, other.token)
      expect(hidden.status).toBe(404)
      const unknownId = crypto.randomUUID()
      const unknown = yield* post("/v1/messages", { ticketId: unknownId, content: "void" }, agent.token)
      expect(unknown.status).toBe(404)
      expect(unknown.body).toEqual(problem(404, "NotFound", `ticket ${unknownId} not found`))
      const page = decode(MessagePage, yield* get(`/v1/tickets/${ticket.id}/messages`, owner.token))
      expect(page.items.map((m) => m.content)).toEqual(["mine", "staff reply"])
      expect((yield* get(`/v1/tickets/${ticket.id}/messages`, other.token)).status).toBe(404)
      expect((yield* get(`/v1/tickets/${unknownId}/messages`, agent.token)).status).toBe(404)
    }))

  it.scoped("message input is validated: ticketId a UUID, content 1..10000 characters and not blank", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const agent = yield* fx.user("agent")
      const ticket = yield* createTicket(agent)
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ ticketId: "nope", content: "x" }, "ticketId"],
        [{ content: "x" }, "ticketId"],
        [{ ticketId: ticket.id }, "content"],
        [{ ticketId: ticket.id, content: "" }, "content"],
        [{ ticketId: ticket.id, content: " \n\t " }, "content"],
        [{ ticketId: ticket.id, content: "c".repeat(10_001) }, "content"]
      ]
      for (const [body, field] of cases) {
        const r = yield* post("/v1/messages", body, agent.token)
        expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400)
        expect((r.body as { issues: Array<{ path: Array<string> }> }).issues.map((i) => i.path[0])).toContain(field)
      }
      expect((yield* post("/v1/messages", { ticketId: ticket.id, content: "c".repeat(10_000) }, agent.token)).status)
        .toBe(201)
    }))

  it.scoped("messages list oldest first, each exactly once across pages", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const owner = yield* fx.user("customer")
      const ticket = yield* createTicket(owner)
      const sent: Array<string> = []
      for (let i = 0; i < 7; i++) {
        const r = yield* post("/v1/messages", { ticketId: ticket.id, content: `message ${i}` }, owner.token)
        sent.push(decode(Message, r).id)
      }
      const seen: Array<string> = []
      let cursor: string | null = null
      let pages = 0
      do {
        const path: string = `/v1/tickets/${ticket.id}/messages?limit=3${cursor ? `&cursor=${cursor}` : ""}`
        const page = decode(MessagePage, yield* get(path, owner.token))
        for (const m of page.items) seen.push(m.id)
        cursor = page.nextCursor
        pages++
      } while (cursor !== null && pages < 10)
      expect(pages).toBe(3)
      expect(seen).toEqual(sent)
      const bad = yield* get(`/v1/tickets/${ticket.id}/messages?cursor=abc`, owner.token)
      expect(bad.status).toBe(400)
      expect(bad.body).toMatchObject({ field: "cursor" })
    }))
})
