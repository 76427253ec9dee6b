/**
 * Authorization beyond the per-endpoint checks of test/api:
 * - mass assignment: fields a caller may not set (owner, author, status, ids,
 *   timestamps, hashes, `__proto__`) are ignored or refused, never applied;
 * - the role matrix of docs/API.md as a model: random sequences of
 *   (caller, action) on one ticket, each answered exactly as the model says.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import type { TicketStatus } from "../../src/Domain/Events.js"
import { Message } from "../../src/Messages/Domain.js"
import { canTransition, Ticket, TicketPage } from "../../src/Tickets/Domain.js"
import { User } from "../../src/Users/Domain.js"
import { call, decode, get, patch, post } from "../api/support/Client.js"
import { makeFixtures, PASSWORD, suffix, type TestUser } from "../api/support/Fixtures.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"

const raw = (method: "POST" | "PATCH", path: string, text: string, token?: string) =>
  call(method, path, { token, raw: text })

type Caller = "owner" | "otherCustomer" | "agent" | "admin"
type Action =
  | { readonly _tag: "get" }
  | { readonly _tag: "editTitle" }
  | { readonly _tag: "assign" }
  | { readonly _tag: "status"; readonly to: TicketStatus }
  | { readonly _tag: "postMessage" }
  | { readonly _tag: "listMessages" }
  | { readonly _tag: "listTickets" }
  | { readonly _tag: "createUser"; readonly role: "admin" | "agent" | "customer" }

const callerArb = fc.constantFrom<Caller>("owner", "otherCustomer", "agent", "admin")
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.constant({ _tag: "get" } as const),
  fc.constant({ _tag: "editTitle" } as const),
  fc.constant({ _tag: "assign" } as const),
  fc.constantFrom<TicketStatus>("open", "in_progress", "resolved", "closed").map((
    to
  ) => ({ _tag: "status", to } as const)),
  fc.constant({ _tag: "postMessage" } as const),
  fc.constant({ _tag: "listMessages" } as const),
  fc.constant({ _tag: "listTickets" } as const),
  fc.constantFrom("admin" as const, "agent" as const, "customer" as const).map((
    role
  ) => ({ _tag: "createUser", role } as const))
)

/** docs/API.md, Roles: the status each (caller, action) must get, given the ticket's status. */
const expected = (caller: Caller, action: Action, status: TicketStatus): number => {
  const staff = caller === "agent" || caller === "admin"
  const visible = staff || caller === "owner"
  switch (action._tag) {
    case "listTickets":
      return 200
    case "createUser":
      return caller === "admin" ? 201 : 403
    case "get":
    case "editTitle":
    case "listMessages":
      return visible ? 200 : 404
    case "postMessage":
      return visible ? 201 : 404
    case "assign":
      return !visible ? 404 : staff ? 200 : 403
    case "status":
      if (!visible) return 404
      if (!staff && action.to !== "open" && action.to !== "closed") return 403
      return canTransition(status, action.to) ? 200 : 409
  }
}

layer(apiWithOwnThrottle("authz", NO_THROTTLE), { excludeTestServices: true, timeout: "60 seconds" })(
  "authorization",
  (it) => {
    it.scoped("creating a ticket: owner, status, assignee, id and timestamps come from the server, never the body", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        const other = yield* fx.user("customer")
        const agent = yield* fx.user("agent")
        const forgedId = crypto.randomUUID()
        const r = yield* post("/v1/tickets", {
          title: "mine",
          description: "d",
          id: forgedId,
          ownerId: other.id,
          status: "closed",
          assigneeId: agent.id,
          createdAt: "2000-01-01T00:00:00.000Z",
          updatedAt: "2000-01-01T00:00:00.000Z"
        }, customer.token)
        expect(r.status).toBe(201)
        const ticket = decode(Ticket, r)
        expect(ticket).toMatchObject({ ownerId: customer.id, status: "open", assigneeId: null })
        expect(ticket.id).not.toBe(forgedId)
        expect(ticket.createdAt.startsWith("2000")).toBe(false)
        // The other customer cannot see it.
        expect((yield* get(`/v1/tickets/${ticket.id}`, other.token)).status).toBe(404)
      }))

    it.scoped("editing a ticket: status, owner and timestamps in a patch are ignored; a patch of only those is 400", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        const other = yield* fx.user("customer")
        const ticket = decode(Ticket, yield* post("/v1/tickets", { title: "t", description: "d" }, customer.token))
        const r = yield* patch(`/v1/tickets/${ticket.id}`, {
          title: "renamed",
          status: "closed",
          ownerId: other.id,
          id: crypto.randomUUID()
        }, customer.token)
        expect(r.status).toBe(200)
        expect(decode(Ticket, r)).toMatchObject({
          id: ticket.id,
          title: "renamed",
          status: "open",
          ownerId: customer.id
        })
        const only = yield* patch(`/v1/tickets/${ticket.id}`, { status: "closed", ownerId: other.id }, customer.token)
        expect(only.status).toBe(400)
        const status = yield* post(
          `/v1/tickets/${ticket.id}/status`,
          { status: "closed", ownerId: other.id },
          customer.token
        )
        expect(status.status).toBe(409) // open → closed is not a transition; the extra field changes nothing
        expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, customer.token))).toMatchObject({
          status: "open",
          ownerId: customer.id
        })
      }))

    it.scoped("posting a message: the author is the caller, whatever the body says", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        const agent = yield* fx.user("agent")
        const ticket = decode(Ticket, yield* post("/v1/tickets", { title: "t", description: "d" }, customer.token))
        const r = yield* post("/v1/messages", {
          ticketId: ticket.id,
          content: "hi",
          authorId: agent.id,
          id: crypto.randomUUID()
        }, customer.token)
        expect(r.status).toBe(201)
        expect(decode(Message, r).authorId).toBe(customer.id)
      }))

    it.scoped("creating a user: id, hash and timestamps in the body are ignored; the password given is the one that works", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const admin = yield* fx.user("admin")
        const sql = yield* SqlClient.SqlClient
        const username = `mass_${suffix()}`
        const forgedId = crypto.randomUUID()
        const r = yield* post("/v1/users", {
          username,
          password: "a-real-password",
          role: "customer",
          id: forgedId,
          passwordHash: "scrypt$16384$8$1$AAAA$BBBB",
          createdAt: "2000-01-01T00:00:00.000Z"
        }, admin.token)
        expect(r.status).toBe(201)
        const user = decode(User, r)
        yield* fx.track(user.id)
        expect(user.id).not.toBe(forgedId)
        const [row] = yield* sql<{ passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${user.id}`
        expect(row!.passwordHash).not.toContain("AAAA$BBBB")
        expect((yield* post("/v1/auth/login", { username, password: "a-real-password" })).status).toBe(200)
      }))

    it.scoped("`__proto__` and duplicate keys cannot smuggle a role or an owner in", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const admin = yield* fx.user("admin")
        const customer = yield* fx.user("customer")
        const other = yield* fx.user("customer")
        // No role at all, one in the prototype: refused, not defaulted to the prototype's.
        const proto = yield* raw(
          "POST",
          "/v1/users",
          `{"username":"proto_${suffix()}","password":"password123","__proto__":{"role":"admin"}}`,
          admin.token
        )
        expect(proto.status).toBe(400)
        // Duplicate keys: JSON's last one wins, and it must be a valid value on its own.
        const dup = yield* raw(
          "POST",
          "/v1/users",
          `{"username":"dup_${suffix()}","password":"password123","role":"admin","role":"root"}`,
          admin.token
        )
        expect(dup.status).toBe(400)
        const ticket = yield* raw(
          "POST",
          "/v1/tickets",
          `{"title":"t","description":"d","__proto__":{"ownerId":"${other.id}"},"constructor":{"prototype":{"ownerId":"${other.id}"}}}`,
          customer.token
        )
        expect(ticket.status).toBe(201)
        expect(decode(Ticket, ticket).ownerId).toBe(customer.id)
        // Nothing leaked into Object.prototype of the server process (same process as this test).
        expect(({} as Record<string, unknown>)["ownerId"]).toBeUndefined()
        expect(({} as Record<string, unknown>)["role"]).toBeUndefined()
      }))

    it.effect.prop(
      "any sequence of (caller, action) on a ticket is answered exactly as the role matrix says",
      { steps: fc.array(fc.tuple(callerArb, actionArb), { minLength: 1, maxLength: 10 }) },
      ({ steps }) =>
        Effect.gen(function*() {
          const fx = yield* makeFixtures
          const callers: Record<Caller, TestUser> = {
            owner: yield* fx.user("customer"),
            otherCustomer: yield* fx.user("customer"),
            agent: yield* fx.user("agent"),
            admin: yield* fx.user("admin")
          }
          const ticket = decode(
            Ticket,
            yield* post("/v1/tickets", { title: "matrix", description: "d" }, callers.owner.token)
          )
          let status: TicketStatus = "open"
          for (const [who, action] of steps) {
            const caller = callers[who]
            const want = expected(who, action, status)
            const what = `${who} ${JSON.stringify(action)} on a ${status} ticket`
            const r = yield* Effect.gen(function*() {
              switch (action._tag) {
                case "get":
                  return yield* get(`/v1/tickets/${ticket.id}`, caller.token)
                case "editTitle":
                  return yield* patch(`/v1/tickets/${ticket.id}`, { title: `by ${who}` }, caller.token)
                case "assign":
                  return yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: callers.agent.id }, caller.token)
                case "status":
                  return yield* post(`/v1/tickets/${ticket.id}/status`, { status: action.to }, caller.token)
                case "postMessage":
                  return yield* post("/v1/messages", { ticketId: ticket.id, content: `from ${who}` }, caller.token)
                case "listMessages":
                  return yield* get(`/v1/tickets/${ticket.id}/messages`, caller.token)
                case "listTickets":
                  return yield* get(`/v1/tickets?limit=100`, caller.token)
                case "createUser":
                  return yield* post("/v1/users", {
                    username: `made_${suffix()}`,
                    password: PASSWORD,
                    role: action.role
                  }, caller.token)
              }
            })
            expect(r.status, what).toBe(want)
            if (want >= 400) {
              expect(r.body, what).toMatchObject({ _tag: expect.any(String), message: expect.any(String) })
            }
            if (action._tag === "status" && r.status === 200) {
              status = action.to
            }
            if (action._tag === "createUser" && r.status === 201) yield* fx.track(decode(User, r).id)
            if (action._tag === "listTickets") {
              const ids = decode(TicketPage, r).items.map((t) => t.id)
              // Only the owner and staff ever see the ticket in a listing.
              if (who === "otherCustomer") expect(ids, what).not.toContain(ticket.id)
              if (who === "owner") expect(ids, what).toContain(ticket.id)
            }
          }
          expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, callers.admin.token)).status).toBe(status)
        }).pipe(Effect.scoped),
      { fastCheck: { numRuns: 30 } }
    )
  }
)
