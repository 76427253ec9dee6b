/**
 * SQL injection through every filter, path and body field: each answer is a
 * 4xx, or a normal 2xx that stored the text literally; no statement runs
 * that the API did not write (no rows changed or lost beyond the test's own,
 * no table dropped, no injected SELECT: the payloads that would take a
 * session-level advisory lock leave none behind, which a timing check of
 * `pg_sleep` could only guess at on a busy machine).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, FastCheck as fc, Schema } from "effect"
import { Message, MessagePage } from "../../src/Messages/Domain.js"
import { Ticket } from "../../src/Tickets/Domain.js"
import { User, Username } from "../../src/Users/Domain.js"
import { call, decode, get, patch, post, type Reply } from "../api/support/Client.js"
import { makeFixtures, PASSWORD, suffix } from "../api/support/Fixtures.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"

const CLASSICS = [
  "' OR 1=1 --",
  "' OR '1'='1",
  "\"; DROP TABLE tickets; --",
  "'); DROP TABLE users; --",
  "'; DELETE FROM messages; --",
  "1; SELECT pg_sleep(5)",
  "'; SELECT pg_sleep(5); --",
  "1; SELECT pg_advisory_lock(717171)",
  "'; SELECT pg_advisory_lock(717171); --",
  "' OR pg_advisory_lock(717171) IS NULL --",
  "' UNION SELECT id, password_hash, role, created_at FROM users --",
  "admin'--",
  "' OR ''='",
  "'||(SELECT password_hash FROM users LIMIT 1)||'",
  "$$; DROP TABLE outbox; $$",
  "\\'; TRUNCATE audit_log; --",
  "%' OR '1'='1' --",
  "1) OR (1=1",
  "open' OR status IS NOT NULL --",
  "00000000-0000-0000-0000-000000000000' OR '1'='1",
  "'::text; UPDATE users SET role = 'admin'; --",
  "E'\\x27'; COPY users TO '/tmp/x'; --",
  // A SQL comment that is also a valid username: the user is created, named exactly that.
  "1--",
  "/* */ OR /* */ 1=1"
]

/** The advisory lock key of the payloads above: held by any session after an injected statement took it. */
const INJECTED_LOCK = 717171

/** Classic payloads, alone or around random text, and random strings of SQL metacharacters. */
const payload = fc.oneof(
  fc.constantFrom(...CLASSICS),
  fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom(...CLASSICS), fc.string({ maxLength: 8 })).map(([a, b, c]) =>
    `${a}${b}${c}`
  ),
  fc.stringOf(
    fc.constantFrom("'", "\"", ";", "-", "-", "/", "*", "\\", "%", "_", "(", ")", "=", " ", "O", "R", "1", "$"),
    { minLength: 1, maxLength: 30 }
  )
)

const VALID_TS = "2030-01-01T00:00:00.000000Z"
/** Cursors shaped like ours around a payload (base64url of `<ts>|<id>`), and the payload itself. */
const cursorsFor = (p: string) => [
  p,
  Buffer.from(p).toString("base64url"),
  Buffer.from(`${VALID_TS}|${crypto.randomUUID()}${p}`).toString("base64url"),
  Buffer.from(`${VALID_TS}${p}|${crypto.randomUUID()}`).toString("base64url")
]

/**
 * What a successful injection would change: the tables that exist, and the
 * rows of sentinel users (with their tickets, messages and audit rows) that no
 * request of the test touches. Other suites may write to the same database
 * meanwhile, so only rows this test owns are compared.
 */
const fingerprint = (userIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ digest: string }>`SELECT concat_ws('|',
        (SELECT string_agg(concat_ws(',', id, username, role, password_hash, created_at), ';' ORDER BY id) FROM users WHERE id IN ${
      sql.in(userIds)
    }),
        (SELECT string_agg(concat_ws(',', id, title, description, status, priority, owner_id, assignee_id, updated_at), ';' ORDER BY id)
          FROM tickets WHERE owner_id IN ${sql.in(userIds)}),
        (SELECT string_agg(concat_ws(',', id, ticket_id, author_id, content), ';' ORDER BY id) FROM messages WHERE author_id IN ${
      sql.in(userIds)
    }),
        (SELECT count(*) FROM audit_log WHERE actor_id IN ${sql.in(userIds)}),
        (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'),
        (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = ${INJECTED_LOCK})
      ) AS digest`.pipe(Effect.map((rows) => rows[0]!.digest), Effect.orDie))

/** Checks a reply: a 4xx with a JSON error, or the success status. */
const expectAnswer = (r: Reply, allowed: ReadonlyArray<number>, what: string) => {
  expect(allowed, `${what} → ${r.status} ${r.text.slice(0, 200)}`).toContain(r.status)
  if (r.status >= 400) expect(r.body, what).toMatchObject({ _tag: expect.any(String), message: expect.any(String) })
}

/**
 * One payload through every filter, path and field, between a fingerprint of
 * sentinel rows before and after. `credentials` adds the scrypt-heavy part
 * (creating a user with the payload in its password, then logging in).
 */
/** Whether the listing accepts `value` for `param` (Schemas of src/Tickets/Domain.ts and src/Kit/Pagination.ts). */
const validQueryValue = (param: "status" | "priority" | "assigneeId" | "limit", value: string): boolean => {
  switch (param) {
    case "status":
      return ["open", "in_progress", "resolved", "closed"].includes(value)
    case "priority":
      return ["low", "medium", "high", "urgent"].includes(value)
    case "assigneeId":
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
    case "limit": {
      const n = Number(value)
      return value.trim() !== "" && Number.isInteger(n) && n >= 1 && n <= 100
    }
  }
}

const probe = (p: string, options: { readonly credentials: boolean }) =>
  Effect.gen(function*() {
    const fx = yield* makeFixtures
    const admin = yield* fx.user("admin")
    const customer = yield* fx.user("customer")
    // Sentinels: an admin and a customer with a ticket and a message, which no request below touches.
    const sentinels = [yield* fx.user("admin"), yield* fx.user("customer")]
    const sentinelTicket = decode(
      Ticket,
      yield* post("/v1/tickets", { title: "sentinel", description: "d" }, sentinels[1]!.token)
    )
    expect(
      (yield* post("/v1/messages", { ticketId: sentinelTicket.id, content: "sentinel" }, sentinels[0]!.token)).status
    ).toBe(201)
    const before = yield* fingerprint(sentinels.map((u) => u.id))
    const q = encodeURIComponent(p)

    // Query parameters: each is an enum, a UUID, an integer or one of our cursors, so a 400 unless the payload
    // happens to be a valid value (fast-check does generate "1", a valid limit).
    for (const param of ["status", "priority", "assigneeId", "limit"] as const) {
      const r = yield* get(`/v1/tickets?${param}=${q}`, admin.token)
      expectAnswer(r, validQueryValue(param, p) ? [200] : [400], `?${param}=${p}`)
    }
    for (const cursor of cursorsFor(p)) {
      const r = yield* get(`/v1/tickets?cursor=${encodeURIComponent(cursor)}`, customer.token)
      expectAnswer(r, [400], `?cursor=${cursor}`)
    }

    // Body fields that are free text: stored and read back verbatim.
    const created = yield* post("/v1/tickets", { title: p, description: p }, customer.token)
    const blank = p.trim().length === 0
    expectAnswer(created, blank ? [400] : [201], `ticket ${p}`)
    const ticket = decode(
      Ticket,
      blank ? yield* post("/v1/tickets", { title: "t", description: p }, customer.token) : created
    )
    expect([ticket.title, ticket.description].slice(blank ? 1 : 0)).toEqual([p, p].slice(blank ? 1 : 0))
    const edited = yield* patch(`/v1/tickets/${ticket.id}`, { description: `${p}!` }, customer.token)
    expectAnswer(edited, [200], `patch ${p}`)
    expect(decode(Ticket, yield* get(`/v1/tickets/${ticket.id}`, admin.token)).description).toBe(`${p}!`)
    const sent = yield* post("/v1/messages", { ticketId: ticket.id, content: p }, customer.token)
    expectAnswer(sent, blank ? [400] : [201], `message ${p}`)
    if (!blank) {
      expect(decode(Message, sent).content).toBe(p)
      const page = yield* get(`/v1/tickets/${ticket.id}/messages?limit=5`, customer.token)
      expectAnswer(page, [200], "messages")
      expect(decode(MessagePage, page).items.map((m) => m.content)).toEqual([p])
    }

    // Fields that are enums or ids: a 400.
    for (
      const [what, r] of [
        ["status", yield* post(`/v1/tickets/${ticket.id}/status`, { status: p }, admin.token)],
        ["priority", yield* patch(`/v1/tickets/${ticket.id}`, { priority: p }, admin.token)],
        ["assigneeId", yield* patch(`/v1/tickets/${ticket.id}`, { assigneeId: p }, admin.token)],
        ["ticketId", yield* post("/v1/messages", { ticketId: p, content: "x" }, customer.token)],
        ["messages ?cursor", yield* get(`/v1/tickets/${ticket.id}/messages?cursor=${q}`, customer.token)]
      ] as const
    ) expectAnswer(r, [400], `${what} = ${p}`)
    // `limit` is an integer: a 400, unless the payload is a valid one (fast-check generates "1").
    const limited = yield* get(`/v1/tickets/${ticket.id}/messages?limit=${q}`, customer.token)
    expectAnswer(limited, validQueryValue("limit", p) ? [200] : [400], `messages ?limit = ${p}`)

    // Path ids: 400 (not a UUID), or 404 where the text changes the route itself.
    for (const path of [`/v1/tickets/${q}`, `/v1/tickets/${q}/messages`]) {
      const r = yield* get(path, admin.token)
      expectAnswer(r, [400, 404], path)
    }
    const status = yield* call("POST", `/v1/tickets/${q}/status`, { token: admin.token, json: { status: "closed" } })
    expectAnswer(status, [400, 404], "status path")

    // Credentials: an unknown username (401, or 400 if too long); a password is just bytes to hash.
    const login = yield* post("/v1/auth/login", { username: p, password: p })
    expectAnswer(login, p.length > 64 ? [400] : [401], `login ${p}`)
    // A username is letters, digits, '_', '.' and '-' (3 to 64): a 400, unless the payload is one (fast-check
    // generates "-_R"), which is then a user like any other.
    const user = yield* post("/v1/users", { username: p, password: PASSWORD, role: "agent" }, admin.token)
    const validUsername = Schema.is(Username)(p)
    expectAnswer(user, validUsername ? [201] : [400], `username ${p}`)
    if (validUsername) {
      const made = decode(User, user)
      yield* fx.track(made.id)
      expect(made.username).toBe(p)
    }
    if (options.credentials) {
      const username = `sqli_${suffix()}`
      const password = `pw ${p}`.padEnd(8, ".").slice(0, 200)
      const made = yield* post("/v1/users", { username, password, role: "customer" }, admin.token)
      expectAnswer(made, [201], `password ${p}`)
      yield* fx.track(decode(User, made).id)
      expect((yield* post("/v1/auth/login", { username, password })).status).toBe(200)
      expect((yield* post("/v1/auth/login", { username, password: `${password}x` })).status).toBe(401)
    }
    // No table dropped, no sentinel row changed or deleted.
    expect(yield* fingerprint(sentinels.map((u) => u.id))).toBe(before)
  }).pipe(Effect.scoped)

layer(apiWithOwnThrottle("sqli", NO_THROTTLE), { excludeTestServices: true, timeout: "60 seconds" })(
  "SQL injection",
  (it) => {
    it.effect("each classic payload through every filter, path and field: a 4xx or the literal text stored; the tables are intact", () =>
      Effect.forEach(CLASSICS, (p) => probe(p, { credentials: false }), { discard: true }))

    it.effect.prop(
      "generated payloads, credentials included: the same",
      { p: payload },
      ({ p }) => probe(p, { credentials: true }),
      { fastCheck: { numRuns: 10 } }
    )
  }
)
