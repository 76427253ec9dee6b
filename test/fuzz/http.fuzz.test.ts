/**
 * HTTP fuzzing: fast-check properties against the running server over real
 * HTTP (raw node:http, so nothing is normalized on the way). Every endpoint
 * gets random and malformed JSON, wrong types, missing and extra fields, huge
 * strings and bodies, invalid ids in paths and bodies, invalid cursors and
 * query strings, odd unicode, SQL-looking strings, wrong content types, odd
 * methods and odd Authorization headers.
 *
 * Every answer must be below 500 — a 4xx with a JSON `{ _tag, message }` body,
 * or a 2xx where the input happens to be valid — and after each batch of
 * requests the server must still answer GET /health.
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { BODY_LIMIT } from "../../src/App/Middleware.js"
import { makeFixtures, PASSWORD, suffix, type TestUser } from "../api/support/Fixtures.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"
import { type RawReply, type RawRequest, rawRequest, serverPort } from "../support/RawHttp.js"

// ------------------------------------------------------------------ world ---

/** Users, tickets and a cursor the requests refer to; removed (with all the fuzzing made) when the file ends. */
interface World {
  readonly users: Readonly<Record<"admin" | "agent" | "customer", TestUser>>
  readonly ticketId: string
  readonly cursor: string
  readonly track: (userId: string) => Effect.Effect<void>
}
class FuzzWorld extends Context.Tag("test/FuzzWorld")<FuzzWorld, World>() {}

const json = (port: number, method: string, path: string, token: string, body?: unknown) =>
  rawRequest(port, {
    method,
    path,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" })
    },
    body: body === undefined ? undefined : JSON.stringify(body)
  })

const WorldLive = Layer.scoped(
  FuzzWorld,
  Effect.gen(function*() {
    const fx = yield* makeFixtures
    const users = {
      admin: yield* fx.user("admin"),
      agent: yield* fx.user("agent"),
      customer: yield* fx.user("customer")
    }
    const port = yield* serverPort
    const first = yield* json(port, "POST", "/v1/tickets", users.customer.token, {
      title: "fuzz target",
      description: "d"
    })
    yield* json(port, "POST", "/v1/tickets", users.customer.token, { title: "second", description: "d" })
    const page = yield* json(port, "GET", "/v1/tickets?limit=1", users.customer.token)
    const ticketId = (first.json as { id: string }).id
    yield* json(port, "POST", "/v1/messages", users.customer.token, { ticketId, content: "first message" })
    return FuzzWorld.of({ users, ticketId, cursor: (page.json as { nextCursor: string }).nextCursor, track: fx.track })
  })
)

const TestLayer = WorldLive.pipe(Layer.provideMerge(apiWithOwnThrottle("http-fuzz", NO_THROTTLE)))

// -------------------------------------------------------------- endpoints ---

type Who = "admin" | "agent" | "customer" | "anonymous"
type Body = Record<string, unknown>

interface Endpoint {
  readonly name: string
  readonly method: string
  readonly path: (w: World, id: string) => string
  /** Whether the path has an `:id`. */
  readonly hasId: boolean
  /** A valid body, for the endpoints that take one. */
  readonly body?: (w: World) => Body
  /** A valid query string. */
  readonly query?: (w: World) => Record<string, string>
  readonly auth: boolean
  /** What a success looks like. */
  readonly success: "json" | "text" | "html"
}

const ENDPOINTS: ReadonlyArray<Endpoint> = [
  { name: "health", method: "GET", path: () => "/health", hasId: false, auth: false, success: "json" },
  { name: "ready", method: "GET", path: () => "/ready", hasId: false, auth: false, success: "json" },
  { name: "openapi", method: "GET", path: () => "/openapi.json", hasId: false, auth: false, success: "json" },
  { name: "docs", method: "GET", path: () => "/docs", hasId: false, auth: false, success: "html" },
  { name: "metrics", method: "GET", path: () => "/metrics", hasId: false, auth: false, success: "text" },
  {
    name: "login",
    method: "POST",
    path: () => "/v1/auth/login",
    hasId: false,
    auth: false,
    success: "json",
    body: (w) => ({ username: w.users.customer.username, password: PASSWORD })
  },
  {
    name: "createUser",
    method: "POST",
    path: () => "/v1/users",
    hasId: false,
    auth: true,
    success: "json",
    body: () => ({ username: `fz_${suffix()}`, password: "password123", role: "customer" })
  },
  { name: "me", method: "GET", path: () => "/v1/users/me", hasId: false, auth: true, success: "json" },
  {
    name: "createTicket",
    method: "POST",
    path: () => "/v1/tickets",
    hasId: false,
    auth: true,
    success: "json",
    body: () => ({ title: "fuzzed", description: "d", priority: "high" })
  },
  {
    name: "listTickets",
    method: "GET",
    path: () => "/v1/tickets",
    hasId: false,
    auth: true,
    success: "json",
    query: (w) => ({ status: "open", priority: "medium", assigneeId: w.users.agent.id, limit: "5", cursor: w.cursor })
  },
  { name: "getTicket", method: "GET", path: (_, id) => `/v1/tickets/${id}`, hasId: true, auth: true, success: "json" },
  {
    name: "updateTicket",
    method: "PATCH",
    path: (_, id) => `/v1/tickets/${id}`,
    hasId: true,
    auth: true,
    success: "json",
    body: (w) => ({ title: "renamed", description: "d2", priority: "low", assigneeId: w.users.agent.id })
  },
  {
    name: "changeStatus",
    method: "POST",
    path: (_, id) => `/v1/tickets/${id}/status`,
    hasId: true,
    auth: true,
    success: "json",
    body: () => ({ status: "in_progress" })
  },
  {
    name: "sendMessage",
    method: "POST",
    path: () => "/v1/messages",
    hasId: false,
    auth: true,
    success: "json",
    body: (w) => ({ ticketId: w.ticketId, content: "hello" })
  },
  {
    name: "listMessages",
    method: "GET",
    path: (_, id) => `/v1/tickets/${id}/messages`,
    hasId: true,
    auth: true,
    success: "json",
    query: (w) => ({ limit: "5", cursor: w.cursor })
  }
]

const withBody = ENDPOINTS.filter((e) => e.body !== undefined)
const withId = ENDPOINTS.filter((e) => e.hasId)
const withQuery = ENDPOINTS.filter((e) => e.query !== undefined)

// ----------------------------------------------------------------- probes ---

/** One request, described for failure messages, built against the world at run time. */
interface Probe {
  readonly describe: string
  readonly endpoint: Endpoint
  readonly build: (w: World) => RawRequest
}

const tokenOf = (w: World, who: Who) => (who === "anonymous" ? undefined : w.users[who].token)
const authHeaders = (w: World, who: Who): Record<string, string> => {
  const token = tokenOf(w, who)
  return token === undefined ? {} : { authorization: `Bearer ${token}` }
}
const jsonHeaders = { "content-type": "application/json" }

/** Percent-encodes any string, lone surrogates included (as the invalid UTF-8 they would be). */
const encodeLoose = (s: string) =>
  Array.from(s).map((ch) => {
    if (/^[A-Za-z0-9\-._~]$/.test(ch)) return ch
    const cp = ch.codePointAt(0)!
    const bytes = cp >= 0xd800 && cp <= 0xdfff
      ? [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)]
      : [...Buffer.from(ch, "utf8")]
    return bytes.map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("")
  }).join("")

/** An object's JSON text from entries, so keys like `__proto__` stay plain keys. */
const objectText = (entries: ReadonlyArray<readonly [string, unknown]>) =>
  `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? "null"}`).join(",")}}`

const bodyProbe = (e: Endpoint, who: Who, describe: string, text: (w: World) => string | Uint8Array, options: {
  readonly headers?: Record<string, string>
  readonly chunked?: boolean
  readonly id?: (w: World) => string
} = {}): Probe => ({
  describe: `${e.method} ${e.name} as ${who}: ${describe}`,
  endpoint: e,
  build: (w) => ({
    method: e.method,
    path: e.path(w, options.id?.(w) ?? w.ticketId),
    headers: { ...jsonHeaders, ...authHeaders(w, who), ...options.headers },
    body: text(w),
    chunked: options.chunked
  })
})

const who = fc.constantFrom<Who>("admin", "agent", "customer", "anonymous")
const staff = fc.constantFrom<Who>("admin", "agent")
const short = (s: string) => (s.length > 120 ? `${s.slice(0, 120)}… (${s.length} chars)` : s)

const SQL = [
  "' OR 1=1 --",
  "\"; DROP TABLE tickets; --",
  "'); DELETE FROM users; --",
  "1; SELECT pg_sleep(5)",
  "' UNION SELECT * FROM users --"
]
const UNICODE = [
  "\u0000",
  "\ud800",
  "\udfff",
  "\udc00\ud800",
  "\u202e",
  "\u202dRTL\u202c",
  "مرحبا بالعالم",
  "עברית",
  "🙂",
  "👩‍👩‍👧‍👦",
  "🏳️‍🌈",
  "e\u0301",
  "Z\u0351\u0352\u0353\u0354\u0355\u0356",
  "\u200b",
  "\u200d",
  "\ufeff",
  "\uffff",
  "\ufffe",
  "\u0085",
  "\u2028",
  "\u2029",
  "𝕏",
  "\u{10FFFF}",
  "\r\n",
  "\t",
  "\\",
  "\"",
  "a"
]
const unicodeString = fc.array(fc.constantFrom(...UNICODE), { minLength: 1, maxLength: 12 }).map((parts) =>
  parts.join("")
)
const oddString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  unicodeString,
  fc.constantFrom(...SQL),
  fc.constantFrom("", " ", "null", "undefined", "true", "0", "-1", "NaN", "[]", "{}")
)

/** Values of every JSON type, and text that JSON.parse reads as numbers out of range. */
const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
  fc.constant(Number.MAX_SAFE_INTEGER + 2),
  fc.constant(-0)
)

const UUID_LIKE = fc.oneof(
  fc.uuid().map((u) => u.toUpperCase()),
  fc.uuid().map((u) => `{${u}}`),
  fc.uuid().map((u) => `${u}0`),
  fc.uuid().map((u) => u.slice(1)),
  fc.uuid().map((u) => u.replace(/-/g, "")),
  fc.uuid(),
  fc.constantFrom(
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"
  ),
  oddString
)
/** Path segments: encoded odd text, and raw percent-sequences (invalid ones included). */
const pathId = fc.oneof(
  UUID_LIKE.map(encodeLoose),
  fc.constantFrom(
    "%00",
    "%ZZ",
    "%",
    "%E0%A4%A",
    "%ED%A0%80",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    ".",
    "..",
    "a;b",
    "a,b",
    "%20",
    "+",
    "~",
    "null",
    "-1"
  )
)

// 1. random JSON
const randomJson = fc.tuple(fc.constantFrom(...withBody), who, fc.jsonValue({ maxDepth: 4 })).map(([e, w, v]) =>
  bodyProbe(e, w, `random JSON ${short(JSON.stringify(v))}`, () => JSON.stringify(v))
)

// 2. malformed JSON
const malformedText = fc.oneof(
  fc.constantFrom(
    "",
    "{",
    "}",
    "[",
    "{'a': 1}",
    "{\"a\":1,}",
    "NaN",
    "undefined",
    "{\"a\":01}",
    "\"\\u12\"",
    "{\"a\":\"\\x41\"}",
    "nul",
    "tru",
    "\ufeff{}",
    "{}garbage",
    "[]]",
    "{\"__proto__\":",
    "{\"a\" 1}",
    "{a:1}",
    "/* */ {}",
    "{\"a\":1}{\"b\":2}",
    "\u0000",
    "1e999"
  ),
  fc.string({ maxLength: 60 }),
  fc.integer({ min: 1_000, max: 30_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
  fc.integer({ min: 1_000, max: 15_000 }).map((n) => "{\"a\":".repeat(n) + "1" + "}".repeat(n))
)
const malformed = fc.oneof(
  fc.tuple(fc.constantFrom(...withBody), who, malformedText).map(([e, w, text]) =>
    bodyProbe(e, w, `malformed ${short(text)}`, () => text)
  ),
  // A valid body cut anywhere.
  fc.tuple(fc.constantFrom(...withBody), who, fc.double({ min: 0, max: 1, noNaN: true })).map(([e, w, at]) =>
    bodyProbe(e, w, `truncated at ${at.toFixed(2)}`, (world) => {
      const text = JSON.stringify(e.body!(world))
      return text.slice(0, Math.floor(text.length * at))
    })
  ),
  // Bytes that are not UTF-8.
  fc.tuple(fc.constantFrom(...withBody), who, fc.uint8Array({ minLength: 1, maxLength: 40 })).map(([e, w, bytes]) =>
    bodyProbe(
      e,
      w,
      `bytes ${Buffer.from(bytes).toString("hex")}`,
      () => Buffer.concat([Buffer.from("{\"title\":\""), bytes, Buffer.from("\"}")])
    )
  )
)

// 3. wrong types
const wrongTypes = fc.tuple(fc.constantFrom(...withBody), who, fc.nat(), wrongValue).map(([e, w, i, v]) =>
  bodyProbe(e, w, `field #${i} = ${JSON.stringify(v)}`, (world) => {
    const entries = Object.entries(e.body!(world))
    const k = i % entries.length
    return objectText(entries.map(([key, value], j) => [key, j === k ? v : value] as const))
  })
)

// 4. missing and extra fields
const extraKey = fc.oneof(
  fc.constantFrom(
    "__proto__",
    "constructor",
    "prototype",
    "",
    "ownerId",
    "role",
    "id",
    "passwordHash",
    "status",
    "authorId",
    "x".repeat(1000)
  ),
  fc.string({ maxLength: 10 })
)
const missingExtra = fc.tuple(
  fc.constantFrom(...withBody),
  who,
  fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
  fc.array(fc.tuple(extraKey, fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 })
).map(([e, w, keep, extra]) =>
  bodyProbe(
    e,
    w,
    `keep ${keep.map(Number).join("")}, extra ${short(JSON.stringify(extra))}`,
    (world) => objectText([...Object.entries(e.body!(world)).filter((_, i) => keep[i % keep.length]), ...extra])
  )
)

// 5. huge strings and bodies (beyond BODY_LIMIT → 413, declared or chunked)
const huge = fc.tuple(
  fc.constantFrom(...withBody),
  who,
  fc.nat(),
  fc.oneof(fc.integer({ min: 5_000, max: 60_000 }), fc.integer({ min: BODY_LIMIT + 1, max: 3 * BODY_LIMIT })),
  fc.constantFrom("a", "é", "🙂", "\u0000", " "),
  fc.boolean()
).map(([e, w, i, n, ch, chunked]) =>
  bodyProbe(e, w, `field #${i} = ${JSON.stringify(ch)} × ${n}${chunked ? " (chunked)" : ""}`, (world) => {
    const entries = Object.entries(e.body!(world))
    const k = i % entries.length
    return objectText(entries.map(([key, value], j) => [key, j === k ? ch.repeat(n) : value] as const))
  }, { chunked })
)

// 6. invalid ids: in paths, and in bodies
const idInPath = fc.tuple(fc.constantFrom(...withId), who, pathId).map(([e, w, id]): Probe => ({
  describe: `${e.method} ${e.name} as ${w}: id ${id}`,
  endpoint: e,
  build: (world) => ({
    method: e.method,
    path: e.path(world, id),
    headers: { ...authHeaders(world, w), ...(e.body ? jsonHeaders : {}) },
    body: e.body ? JSON.stringify(e.body(world)) : undefined
  })
}))
const idInBody = fc.tuple(
  fc.constantFrom(...withBody.filter((e) => e.name === "sendMessage" || e.name === "updateTicket")),
  staff,
  UUID_LIKE
).map(([e, w, id]) =>
  bodyProbe(
    e,
    w,
    `${e.name === "sendMessage" ? "ticketId" : "assigneeId"} = ${JSON.stringify(id)}`,
    () => JSON.stringify(e.name === "sendMessage" ? { ticketId: id, content: "x" } : { assigneeId: id })
  )
)

// 7. query strings: invalid cursors and limits, unknown, repeated and badly encoded parameters
const cursorValue = fc.oneof(
  fc.string({ maxLength: 40 }).map((s) => Buffer.from(s).toString("base64url")),
  fc.constantFrom(
    Buffer.from("2024-02-31T00:00:00.000000Z|00000000-0000-0000-0000-000000000000").toString("base64url"),
    Buffer.from("0000-01-01T00:00:00.000000Z|00000000-0000-0000-0000-000000000000").toString("base64url"),
    Buffer.from("99999-01-01T00:00:00.000000Z|00000000-0000-0000-0000-000000000000").toString("base64url"),
    Buffer.from("2024-01-01T00:00:00.000000Z|' OR 1=1 --").toString("base64url"),
    "x".repeat(300),
    "",
    "====",
    "a+b/c="
  ),
  oddString
)
const queryValue = fc.oneof(
  fc.constantFrom(
    "-1",
    "0",
    "101",
    "1e2",
    "0x10",
    " 5",
    "5.0",
    "5.5",
    "NaN",
    "Infinity",
    "99999999999999999999",
    "",
    "open",
    "urgent",
    "normal"
  ),
  cursorValue,
  UUID_LIKE
)
const queryParam = fc.oneof(
  fc.constantFrom("status", "priority", "assigneeId", "limit", "cursor"),
  fc.constantFrom("status[]", "limit[0]", "__proto__", "constructor", "", "x".repeat(200)),
  fc.string({ maxLength: 8 })
)
const query = fc.tuple(
  fc.constantFrom(...withQuery),
  fc.constantFrom<Who>("admin", "customer", "anonymous"),
  fc.boolean(),
  fc.array(fc.tuple(queryParam, queryValue, fc.boolean()), { minLength: 1, maxLength: 6 }),
  fc.constantFrom("", "&%ZZ=1", "&limit=%", "&&&", "&=", "&cursor=%E0%A4%A", "#fragment")
).map(([e, w, keepValid, params, tail]): Probe => {
  // Raw: every `%` is sent as is, so the text's own percent-sequences (invalid ones included) reach the server.
  const encode = (s: string, raw: boolean) => (raw ? s.split("%").map(encodeLoose).join("%") : encodeLoose(s))
  return {
    describe: `${e.method} ${e.name} as ${w}: ?${short(JSON.stringify(params))}${tail}`,
    endpoint: e,
    build: (world) => {
      const valid = keepValid ? Object.entries(e.query!(world)).map(([k, v]) => `${k}=${encodeURIComponent(v)}`) : []
      const odd = params.map(([k, v, raw]) => `${encode(k, raw)}=${encode(v, raw)}`)
      return {
        method: "GET",
        path: `${e.path(world, world.ticketId)}?${[...valid, ...odd].join("&")}${tail}`,
        headers: authHeaders(world, w)
      }
    }
  }
})

// 8. odd unicode and 9. SQL-looking strings, in every field
const oddText = fc.tuple(
  fc.constantFrom(...withBody),
  who,
  fc.nat(),
  fc.oneof(unicodeString, fc.constantFrom(...SQL), oddString)
).map(
  ([e, w, i, s]) =>
    bodyProbe(e, w, `field #${i} = ${JSON.stringify(s)}`, (world) => {
      const entries = Object.entries(e.body!(world))
      const k = i % entries.length
      return objectText(entries.map(([key, value], j) => [key, j === k ? s : value] as const))
    })
)

// 10. content types
const contentType = fc.tuple(
  fc.constantFrom(...withBody),
  who,
  fc.constantFrom(
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "text/html",
    "application/octet-stream",
    "application/json; charset=utf-16",
    "APPLICATION/JSON",
    "application/json;charset=latin1",
    "application/jsonp",
    "application/json, text/plain",
    "application/vnd.api+json",
    "",
    "*/*",
    "application/*",
    "json"
  ),
  fc.boolean()
).map(([e, w, type, valid]) =>
  bodyProbe(
    e,
    w,
    `Content-Type ${JSON.stringify(type)}${valid ? "" : ", form body"}`,
    (world) => valid ? JSON.stringify(e.body!(world)) : "title=x&description=y",
    { headers: { "content-type": type } }
  )
)

// 11. odd methods, with or without a body
const methods = fc.tuple(
  fc.constantFrom(...ENDPOINTS),
  who,
  fc.constantFrom(
    "PUT",
    "DELETE",
    "OPTIONS",
    "HEAD",
    "TRACE",
    "PROPFIND",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "PURGE",
    "LINK",
    "UNLINK",
    "SEARCH",
    "REPORT",
    "QUERY",
    "get",
    "Post"
  ),
  fc.boolean()
).map(([e, w, method, withPayload]): Probe => ({
  describe: `${method} ${e.name} as ${w}${withPayload ? " with a body" : ""}`,
  endpoint: e,
  build: (world) => ({
    method,
    path: e.path(world, world.ticketId),
    headers: { ...authHeaders(world, w), ...(withPayload ? jsonHeaders : {}) },
    body: withPayload ? JSON.stringify(e.body?.(world) ?? { a: 1 }) : undefined
  })
}))

// 12. odd Authorization headers
const authHeader = fc.oneof(
  fc.constantFrom(
    "Bearer",
    "Bearer ",
    "bearer",
    "Basic YWRtaW46YWRtaW4xMjM=",
    "Bearer a.b.c",
    "Bearer ....",
    "Token x",
    "Bearer  x",
    "Bearer\tx"
  ),
  fc.string({ minLength: 1, maxLength: 40 }).filter((s) => /^[\x21-\x7e ]*$/.test(s)).map((s) => `Bearer ${s}`),
  fc.integer({ min: 1_000, max: 12_000 }).map((n) => `Bearer ${"A".repeat(n)}`),
  fc.constantFrom("admin", "agent", "customer").map((role) => ({ role }))
)
const auth = fc.tuple(fc.constantFrom(...ENDPOINTS.filter((e) => e.auth)), authHeader).map(([e, h]): Probe => ({
  describe: `${e.method} ${e.name}: Authorization ${
    typeof h === "string" ? short(JSON.stringify(h)) : `token of ${h.role} with its payload's role changed`
  }`,
  endpoint: e,
  build: (world) => {
    let value: string
    if (typeof h === "string") value = h
    else {
      // A real token with its payload re-encoded (role: admin): the signature no longer matches.
      const [head, payload, signature] = world.users[h.role as "admin" | "agent" | "customer"].token.split(".")
      const claims = { ...JSON.parse(Buffer.from(payload!, "base64url").toString()), role: "admin" }
      value = `Bearer ${head}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`
    }
    return {
      method: e.method,
      path: e.path(world, world.ticketId),
      headers: { authorization: value, ...(e.body ? jsonHeaders : {}) },
      body: e.body ? JSON.stringify(e.body(world)) : undefined
    }
  }
}))

// ------------------------------------------------------------- the check ---

const bodySize = (
  req: RawRequest
) => (req.body === undefined ? 0 : typeof req.body === "string" ? Buffer.byteLength(req.body) : req.body.length)

const check = (probe: Probe, req: RawRequest, reply: RawReply) => {
  const what = `${probe.describe} → ${reply.status} ${short(reply.text)}`
  expect(reply.status, what).toBeGreaterThanOrEqual(200)
  // /ready answers 503 while a dependency is really down (another suite may stop Redis meanwhile): not an input's doing.
  const notReady = probe.endpoint.name === "ready" && reply.status === 503 &&
    (reply.json as { _tag?: unknown } | undefined)?._tag === "NotReady"
  if (!notReady) expect(reply.status, what).toBeLessThan(500)
  const bodyMethod = req.method === "POST" || req.method === "PATCH" || req.method === "PUT"
  if (bodyMethod && bodySize(req) > BODY_LIMIT && reply.status !== 404) expect(reply.status, what).toBe(413)
  if (req.method === "HEAD") return
  if (reply.status >= 400) {
    expect(reply.json, what).toMatchObject({ _tag: expect.any(String), message: expect.any(String) })
  } else if (probe.endpoint.success === "json" && req.method !== "OPTIONS") {
    expect(reply.json, what).toBeTypeOf("object")
  }
}

/** Sends a batch, checks each answer, then that the server still answers /health. */
const runBatch = (probes: ReadonlyArray<Probe>) =>
  Effect.gen(function*() {
    const world = yield* FuzzWorld
    const port = yield* serverPort
    for (const probe of probes) {
      const req = probe.build(world)
      const reply = yield* rawRequest(port, req)
      check(probe, req, reply)
      if (probe.endpoint.name === "createUser" && reply.status === 201) {
        yield* world.track((reply.json as { id: string }).id)
      }
    }
    const health = yield* rawRequest(port, { method: "GET", path: "/health" })
    expect(health.status, "the server stopped serving after the batch").toBe(200)
    expect(health.json).toEqual({ status: "ok" })
  })

const batch = (probe: fc.Arbitrary<Probe>) => fc.array(probe, { minLength: 1, maxLength: 5 })
/** Runs per property: modest by default (the whole file takes seconds); `FUZZ_RUNS=500` for a deeper search. */
const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 30)
const RUNS = { fastCheck: { numRuns: NUM_RUNS } }

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("HTTP fuzzing", (it) => {
  it.effect.prop("random JSON bodies", { probes: batch(randomJson) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop(
    "malformed JSON and non-UTF-8 bodies",
    { probes: batch(malformed) },
    ({ probes }) => runBatch(probes),
    RUNS
  )
  it.effect.prop("wrong types in every field", { probes: batch(wrongTypes) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop("missing and extra fields", { probes: batch(missingExtra) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop(
    "huge strings and bodies (over 64 KiB → 413)",
    { probes: batch(huge) },
    ({ probes }) => runBatch(probes),
    RUNS
  )
  it.effect.prop("invalid ids in paths", { probes: batch(idInPath) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop("invalid ids in bodies", { probes: batch(idInBody) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop(
    "invalid cursors, limits and query strings",
    { probes: batch(query) },
    ({ probes }) => runBatch(probes),
    RUNS
  )
  it.effect.prop(
    "odd unicode and SQL-looking strings in every field",
    { probes: batch(oddText) },
    ({ probes }) => runBatch(probes),
    RUNS
  )
  it.effect.prop("wrong content types", { probes: batch(contentType) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop("odd methods", { probes: batch(methods) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop("odd Authorization headers", { probes: batch(auth) }, ({ probes }) => runBatch(probes), RUNS)
  it.effect.prop(
    "everything at once",
    {
      probes: fc.array(
        fc.oneof(
          randomJson,
          malformed,
          wrongTypes,
          missingExtra,
          huge,
          idInPath,
          idInBody,
          query,
          oddText,
          contentType,
          methods,
          auth
        ),
        { minLength: 5, maxLength: 15 }
      )
    },
    ({ probes }) => runBatch(probes),
    { fastCheck: { numRuns: Math.ceil(NUM_RUNS / 2) } }
  )
})
