/**
 * The request corpus: every endpoint of the production API, with good and bad
 * inputs, missing, malformed, forged and expired tokens, the role rules and
 * the status machine, sent one after the other to the real bundle
 * (`node dist/api.mjs`, started here as a child process), and each answer
 * (status, the headers that matter, the body) compared with
 * corpus.golden.json, entry by entry.
 *
 * It pins today's behaviour so that a refactor can show it changed nothing.
 * Black box on purpose: nothing is imported from src/, so moving or renaming
 * modules cannot break it; only a change of what goes over the wire can.
 *
 * Dynamic values are normalised before they are recorded, deterministically:
 * UUIDs become `<uuid:N>` (numbered by first appearance; object keys are
 * walked in sorted order), ISO timestamps `<ts>`, JWTs `<jwt>`, cursors
 * `<cursor>`, this run's random suffix (in every username) `<run>`, and runs
 * of 20+ equal characters `<c×N>`. Values that depend on timing or on other
 * processes (queue depths, the outbox backlog, the age of a DLQ entry, a
 * lock's remaining seconds) are masked in the few entries that carry them.
 *
 * Listings are cached in Redis per caller scope and query, and only the
 * worker invalidates them (another process may do so at any time): so every
 * listing query runs after the last write it could see, and the staff-wide
 * listing (every ticket in the database, other tests' too) is masked.
 *
 * `UPDATE_CORPUS=1 npx vitest run test/api/corpus.test.ts` (or deleting the
 * golden file) records the golden file anew.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect } from "effect"
import { SignJWT } from "jose"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { type IncomingHttpHeaders, request } from "node:http"
import { connect } from "node:net"
import pg from "pg"
import { type ApiProcess, createVhost, deleteVhost, freePort, startApi, type Vhost } from "../support/ApiProcess.js"

const GOLDEN_URL = new URL("./corpus.golden.json", import.meta.url)
const UPDATE = process.env.UPDATE_CORPUS === "1" || !existsSync(GOLDEN_URL)

interface Entry {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: unknown
}

interface Golden {
  readonly note: string
  readonly entries: ReadonlyArray<Entry>
}

const golden: Golden | undefined = UPDATE ? undefined : (JSON.parse(readFileSync(GOLDEN_URL, "utf8")) as Golden)

// ---------------------------------------------------------------------------
// Run identity and settings passed to the process

/** Random per run; starts with a letter outside a-f so it never matches inside a hex string. */
const RUN = `q${randomBytes(8).toString("hex").replace(/[^a-z0-9]/g, "").slice(0, 7)}`
const JWT_SECRET = `corpus-secret-${randomBytes(16).toString("hex")}`
const OTHER_SECRET = `some-other-secret-${randomBytes(16).toString("hex")}`
const ADMIN = { username: `corpus_admin_${RUN}`, password: `admin-pass-${RUN}` }
const PASSWORD = "correct-horse-battery"
/** Nothing listens on the discard port: the overview's worker panel reports it as unavailable, always the same way. */
const WORKER_METRICS_URL = "http://127.0.0.1:9/metrics"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex")

// ---------------------------------------------------------------------------
// Normalisation

const UUID_G = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi
const JWT_G = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g
const TS_G = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g
const REPEAT_G = /(.)\1{19,}/gs

class Normaliser {
  private readonly uuids = new Map<string, number>()
  private readonly cursors = new Set<string>()

  /** A cursor handed out by the API; replaced wherever it shows up later (request paths). */
  cursor(value: string) {
    this.cursors.add(value)
  }

  string(input: string): string {
    let s = input
    for (const c of this.cursors) s = s.split(c).join("<cursor>")
    s = s.replace(JWT_G, "<jwt>")
    s = s.replace(UUID_G, (u) => {
      const key = u.toLowerCase()
      let n = this.uuids.get(key)
      if (n === undefined) this.uuids.set(key, n = this.uuids.size + 1)
      return `<uuid:${n}>`
    })
    s = s.replace(TS_G, "<ts>")
    s = s.split(RUN).join("<run>")
    s = s.replace(REPEAT_G, (run, c: string) => `<${JSON.stringify(c).slice(1, -1)}×${run.length}>`)
    return s.length > 2000 ? `<string: ${s.length} chars, sha256 ${sha256(s).slice(0, 16)}>` : s
  }

  value(v: unknown, key?: string): unknown {
    if (typeof v === "string") {
      if (key === "nextCursor") {
        this.cursor(v)
        return "<cursor>"
      }
      return this.string(v)
    }
    if (Array.isArray(v)) return v.map((x) => this.value(x))
    if (typeof v === "object" && v !== null) {
      const o = v as Record<string, unknown>
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, this.value(o[k], k)]))
    }
    return v
  }
}

// ---------------------------------------------------------------------------
// HTTP

interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly raw: Buffer
  /** The parsed body when it is JSON. */
  readonly json: unknown
}

interface Send {
  readonly method: string
  readonly path: string
  /** Authorization: Bearer <token>. */
  readonly token?: string | undefined
  /** The Authorization header verbatim. */
  readonly authorization?: string | undefined
  /** Sent as JSON (application/json). */
  readonly json?: unknown
  /** Sent verbatim, with `contentType` (default application/json; null: no Content-Type). */
  readonly raw?: string | Buffer | undefined
  readonly contentType?: string | null | undefined
  /** Without Content-Length, in 8 KiB chunks. */
  readonly chunked?: boolean | undefined
}

const parseJson = (raw: Buffer): unknown => {
  try {
    return JSON.parse(raw.toString("utf8"))
  } catch {
    return undefined
  }
}

/** One request on a fresh connection (no keep-alive: no socket reused after the server closed it). */
const send = (port: number, req: Send) =>
  new Promise<Reply>((resolve, reject) => {
    const headers: Record<string, string> = {}
    if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`
    if (req.authorization !== undefined) headers.authorization = req.authorization
    let body: Buffer | undefined
    if (req.json !== undefined) body = Buffer.from(JSON.stringify(req.json), "utf8")
    if (req.raw !== undefined) body = typeof req.raw === "string" ? Buffer.from(req.raw, "utf8") : req.raw
    if (body !== undefined) {
      const type = req.contentType === undefined ? "application/json" : req.contentType
      if (type !== null) headers["content-type"] = type
      if (req.chunked) headers["transfer-encoding"] = "chunked"
      else headers["content-length"] = String(body.length)
    }
    const out = request({
      host: "127.0.0.1",
      port,
      method: req.method,
      path: req.path,
      headers,
      agent: false,
      timeout: 30_000
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        const raw = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, json: parseJson(raw) })
      })
      res.on("error", reject)
    })
    out.on("timeout", () => out.destroy(new Error(`no answer to ${req.method} ${req.path} within 30 s`)))
    out.on("error", (e) => reject(new Error(`${req.method} ${req.path.slice(0, 200)}: ${e.message}`)))
    if (body !== undefined && req.chunked) {
      for (let i = 0; i < body.length; i += 8192) out.write(body.subarray(i, i + 8192))
      out.end()
    } else {
      out.end(body)
    }
  })

/** A chunked body (RFC 9112 §7.1), without trailers. */
const dechunk = (data: Buffer): Buffer => {
  const parts: Array<Buffer> = []
  let at = 0
  for (;;) {
    const eol = data.indexOf("\r\n", at)
    if (eol < 0) break
    const size = parseInt(data.subarray(at, eol).toString("latin1").split(";")[0]!, 16)
    if (!(size > 0)) break
    parts.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(parts)
}

/** Bytes on a raw socket, for what no HTTP client sends (no Host, bad request lines); read until the server closes. */
const sendRaw = (port: number, bytes: string) =>
  new Promise<Reply>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    const timer = setTimeout(
      () => socket.destroy(new Error("the server did not close the connection within 10 s")),
      10_000
    )
    socket.on("data", (c: Buffer) => chunks.push(c))
    socket.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    socket.on("close", () => {
      clearTimeout(timer)
      const all = Buffer.concat(chunks)
      const split = all.indexOf("\r\n\r\n")
      if (split < 0) {
        return reject(new Error(`no HTTP response: ${JSON.stringify(all.toString("latin1").slice(0, 200))}`))
      }
      const [statusLine = "", ...lines] = all.subarray(0, split).toString("latin1").split("\r\n")
      const headers: IncomingHttpHeaders = {}
      for (const line of lines) {
        const colon = line.indexOf(":")
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      const raw = headers["transfer-encoding"] === "chunked"
        ? dechunk(all.subarray(split + 4))
        : all.subarray(split + 4)
      resolve({ status: Number(statusLine.split(" ")[1]), headers, raw, json: parseJson(raw) })
    })
    socket.write(bytes)
  })

/** The response headers worth pinning (not date, content-length, connection, keep-alive). */
const RECORDED_HEADERS = [
  "content-type",
  "retry-after",
  "www-authenticate",
  "location",
  "cache-control",
  "content-security-policy",
  "x-content-type-options",
  "x-frame-options",
  "referrer-policy"
]

/** How a body that is not JSON is recorded: its length and hash (default), or not at all (for a body that is not deterministic, or huge). */
type BodyMode = "sha256" | "omit"

interface Spec extends Send {
  readonly name: string
  /** Sent on a raw socket instead (`method` and `path` are then only labels). */
  readonly rawSocket?: string | undefined
  readonly body?: BodyMode | undefined
  /** Replaces what depends on timing or other processes, in the normalised entry. */
  readonly mask?: ((entry: { headers: Record<string, string>; body: unknown }) => void) | undefined
}

// ---------------------------------------------------------------------------
// Masks

/** `n` when it is a number in [lo, hi] (the mask stays deterministic and still catches a change of range). */
const inRange = (n: unknown, lo: number, hi: number, label: string) =>
  typeof n === "number" && Number.isInteger(n) && n >= lo && n <= hi ? `<${label}>` : n

/** The `nextCursor` of a page, as the next request sends it. */
const cursorOf = (reply: Reply) => String(obj(reply.json)?.nextCursor)

/** A JSON object of a reply, to read and rewrite in place; `undefined` for anything else. */
const obj = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined

const maskDlqEntries = (entries: unknown) => {
  if (!Array.isArray(entries)) return
  for (const e of entries) {
    const entry = obj(e)
    if (entry && typeof entry.ageSeconds === "number") entry.ageSeconds = "<seconds>"
  }
}

/** The overview: queue depths of the event queues and the outbox backlog depend on the relay and on other tests' rows. */
const maskOverview = ({ body }: { body: unknown }) => {
  const overview = obj(body)
  if (overview === undefined || !("queues" in overview)) return
  const items = obj(overview.queues)?.items
  for (const q of Array.isArray(items) ? items : []) {
    const queue = obj(q)
    if (queue && queue.queue !== "tickets.dlq") queue.messages = "<count>"
  }
  const outbox = obj(overview.outbox)
  if (outbox) {
    if (typeof outbox.backlog === "number") outbox.backlog = "<count>"
    if (outbox.oldestUnpublishedSeconds === null || typeof outbox.oldestUnpublishedSeconds === "number") {
      outbox.oldestUnpublishedSeconds = "<seconds or null>"
    }
    if (typeof outbox.unroutable === "number") outbox.unroutable = "<count>"
  }
  // Workers and webhook subscriptions of other test files, running at the same time, share the database.
  const workers = obj(overview.workers)
  if (workers) {
    for (const key of ["live", "items", "events", "totals", "scrapedAt", "available", "error"]) {
      workers[key] = `<${key}>`
    }
  }
  const webhooks = obj(overview.webhooks)
  if (webhooks) {
    for (const key of ["disabled", "items"]) webhooks[key] = `<${key}>`
  }
  // Deliveries left by other test files share the database; the DLQ tools' connection closes when idle (timing).
  const deliveries = obj(overview.deliveries)
  if (deliveries) {
    for (const key of ["channels", "failed", "pending", "latestFailed", "oldestPendingSeconds"]) {
      deliveries[key] = `<${key}>`
    }
  }
  const broker = obj(overview.broker)
  if (broker) broker.connections = "<connections>"
  maskDlqEntries(obj(overview.dlq)?.entries)
}

const maskDlqList = ({ body }: { body: unknown }) => maskDlqEntries(obj(body)?.entries)

/** A lockout's remaining time is 30 s at most and counts down. */
const maskLockout = ({ body: raw, headers }: { headers: Record<string, string>; body: unknown }) => {
  const body = obj(raw)
  if (headers["retry-after"] !== undefined) {
    headers["retry-after"] = String(inRange(Number(headers["retry-after"]), 1, 30, "1..30"))
  }
  if (body) {
    body.retryAfterSeconds = inRange(body.retryAfterSeconds, 1, 30, "1..30")
    if (typeof body.message === "string") body.message = body.message.replace(/in ([1-9]|[12]\d|30) s$/, "in <1..30> s")
  }
}

/** The staff-wide listing holds every ticket in the database (other tests' included) and is shared in Redis. */
const maskStaffListing = ({ body: raw }: { body: unknown }) => {
  const body = obj(raw)
  if (body && Array.isArray(body.items)) body.items = "<every ticket in the database>"
  if (body && (typeof body.nextCursor === "string" || body.nextCursor === null)) body.nextCursor = "<cursor or null>"
}

// ---------------------------------------------------------------------------
// Tokens

const key = (secret: string) => new TextEncoder().encode(secret)
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url")

const signToken = (secret: string, claims: {
  sub: string
  username?: unknown
  role?: unknown
  iss?: string | undefined
  iat?: number
  exp?: number | undefined
}) => {
  const now = Math.floor(Date.now() / 1000)
  const payload: Record<string, unknown> = {}
  if (claims.username !== undefined) payload.username = claims.username
  if (claims.role !== undefined) payload.role = claims.role
  let jwt = new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(claims.sub).setIssuedAt(
    claims.iat ?? now
  )
  if (claims.iss !== undefined) jwt = jwt.setIssuer(claims.iss)
  if (claims.exp !== undefined) jwt = jwt.setExpirationTime(claims.exp)
  return jwt.sign(key(secret))
}

// ---------------------------------------------------------------------------
// The DLQ messages published into the test's own vhost (fixed bytes: their entry ids are hashes of them)

const DLQ_QUEUE = "tickets.dlq"
const FAILED_AT = "2026-01-01T00:00:00.000Z"
const dlqMessages = [
  {
    label: "failed",
    content: JSON.stringify({
      event: "ticket.created",
      eventId: "1e5b1c6a-0c4e-4d7e-9a51-000000000001",
      occurredAt: FAILED_AT,
      payload: {
        id: "1e5b1c6a-0c4e-4d7e-9a51-0000000000a1",
        title: "corpus",
        ownerId: "1e5b1c6a-0c4e-4d7e-9a51-0000000000b1"
      }
    }),
    options: {
      messageId: "1e5b1c6a-0c4e-4d7e-9a51-000000000001",
      contentType: "application/json",
      headers: {
        "opsdesk-error": "handler failed: corpus",
        "opsdesk-error-kind": "failed",
        "opsdesk-attempts": 4,
        "opsdesk-original-routing-key": "ticket.created",
        "opsdesk-original-queue": "ticket.created.queue",
        "opsdesk-failed-at": FAILED_AT
      }
    }
  },
  {
    label: "poison",
    content: "{ this is not json",
    options: {
      messageId: "1e5b1c6a-0c4e-4d7e-9a51-000000000002",
      contentType: "application/json",
      headers: {
        "opsdesk-error": "body is not a valid event",
        "opsdesk-error-kind": "poison",
        "opsdesk-attempts": 1,
        "opsdesk-original-routing-key": "message.sent",
        "opsdesk-original-queue": "message.sent.queue",
        "opsdesk-failed-at": FAILED_AT
      }
    }
  },
  {
    label: "unknown",
    content: JSON.stringify({ event: "message.sent", eventId: "1e5b1c6a-0c4e-4d7e-9a51-000000000003", payload: {} }),
    options: { messageId: "1e5b1c6a-0c4e-4d7e-9a51-000000000003", contentType: "application/json" }
  },
  {
    label: "failed (to discard)",
    content: JSON.stringify({ event: "ticket.updated", eventId: "1e5b1c6a-0c4e-4d7e-9a51-000000000004", payload: {} }),
    options: {
      messageId: "1e5b1c6a-0c4e-4d7e-9a51-000000000004",
      contentType: "application/json",
      headers: {
        "opsdesk-error": "handler failed: corpus",
        "opsdesk-error-kind": "failed",
        "opsdesk-attempts": 4,
        "opsdesk-original-routing-key": "ticket.updated",
        "opsdesk-original-queue": "ticket.updated.queue",
        "opsdesk-failed-at": FAILED_AT
      }
    }
  }
] as const

const publishToDlq = async (url: string) => {
  const connection = await amqp.connect(url)
  try {
    const channel = await connection.createConfirmChannel()
    for (const m of dlqMessages) {
      channel.sendToQueue(DLQ_QUEUE, Buffer.from(m.content), { persistent: true, ...m.options })
    }
    await channel.waitForConfirms()
    await channel.close()
  } finally {
    await connection.close()
  }
}

// ---------------------------------------------------------------------------
// State shared by the hooks and the tests

let api: ApiProcess | undefined
let vhost: Vhost | undefined
let db: pg.Client | undefined
const actual: Array<Entry> = []
/** Ids of the users this run created (the deleted ones included), for the clean-up. */
const createdUserIds = new Set<string>()

const runCorpus = async (port: number, amqpUrl: string) => {
  const norm = new Normaliser()
  const names = new Set<string>()

  const rec = async (spec: Spec): Promise<Reply> => {
    if (names.has(spec.name)) throw new Error(`duplicate corpus entry name: ${spec.name}`)
    names.add(spec.name)
    // Tickets are stamped with the clock's milliseconds: never two in the same one (their order would be the ids').
    await sleep(2)
    const reply = spec.rawSocket !== undefined ? await sendRaw(port, spec.rawSocket) : await send(port, spec)
    const path = norm.string(spec.path)
    const headers: Record<string, string> = {}
    for (const h of RECORDED_HEADERS) {
      const v = reply.headers[h]
      if (v !== undefined) headers[h] = norm.string(Array.isArray(v) ? v.join(", ") : v)
    }
    const type = String(reply.headers["content-type"] ?? "")
    let body: unknown
    if (reply.raw.length === 0) body = "<empty>"
    else if (type.includes("json") && reply.json !== undefined) body = norm.value(reply.json)
    else if (spec.body === "omit") body = "<not recorded>"
    else body = { bytes: reply.raw.length, sha256: sha256(reply.raw) }
    const entry = { name: spec.name, method: spec.method, path, status: reply.status, headers, body }
    spec.mask?.(entry)
    actual.push(entry)
    return reply
  }

  const get = (name: string, path: string, token?: string, extra: Partial<Spec> = {}) =>
    rec({ name, method: "GET", path, token, ...extra })
  const post = (name: string, path: string, json: unknown, token?: string, extra: Partial<Spec> = {}) =>
    rec({ name, method: "POST", path, json, token, ...extra })
  const patch = (name: string, path: string, json: unknown, token?: string, extra: Partial<Spec> = {}) =>
    rec({ name, method: "PATCH", path, json, token, ...extra })
  const postRaw = (name: string, path: string, raw: string | Buffer, token?: string, extra: Partial<Spec> = {}) =>
    rec({ name, method: "POST", path, raw, token, ...extra })

  const expectStatus = (reply: Reply, status: number, what: string) => {
    if (reply.status !== status) {
      throw new Error(`${what}: expected ${status}, got ${reply.status} ${reply.raw.toString("utf8").slice(0, 500)}`)
    }
    return reply
  }
  const login = async (name: string, username: string, password: string) =>
    (expectStatus(await post(name, "/v1/auth/login", { username, password }), 200, name).json as {
      accessToken: string
    }).accessToken

  const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)
  const overLimit = JSON.stringify({ title: "big", description: "x".repeat(70 * 1024) })
  const FIXED_UNKNOWN = "0f0f0f0f-0000-4000-8000-00000000beef"

  // ---- public endpoints, unknown routes
  await get("health", "/health")
  await get("ready", "/ready")
  await rec({ name: "health: HEAD", method: "HEAD", path: "/health" })
  await get("metrics", "/metrics", undefined, { body: "omit" })
  {
    const reply = await get("openapi.json", "/openapi.json", undefined, {
      mask: (entry) => {
        // Huge: its hash, and which operations answer which statuses.
        const doc = entry.body as { paths?: Record<string, Record<string, { responses?: Record<string, unknown> }>> }
        const operations: Record<string, Array<string>> = {}
        for (const [p, methods] of Object.entries(doc.paths ?? {})) {
          for (const [m, op] of Object.entries(methods)) {
            operations[`${m.toUpperCase()} ${p}`] = Object.keys(op.responses ?? {}).sort()
          }
        }
        entry.body = { operations, sha256: "<set below>" }
      }
    })
    ;(actual[actual.length - 1]!.body as { sha256: string }).sha256 = sha256(reply.raw)
  }
  await get("docs page", "/docs", undefined, { body: "omit" })
  await get("ops page", "/ops", undefined, { body: "sha256" })
  await get("ops page, trailing slash", "/ops/", undefined, { body: "sha256" })
  await get("unknown route: GET /nope", "/nope")
  await get("unknown route: GET /v1", "/v1")
  await rec({ name: "unknown route: DELETE /v1/tickets", method: "DELETE", path: "/v1/tickets" })
  await rec({
    name: "unknown route: PUT /v1/tickets/:id",
    method: "PUT",
    path: `/v1/tickets/${FIXED_UNKNOWN}`,
    json: { title: "x" }
  })
  await rec({ name: "unknown route: OPTIONS /v1/tickets", method: "OPTIONS", path: "/v1/tickets" })
  await post("unknown route: POST /health", "/health", {})
  await get("unknown route: GET /v1/auth/login", "/v1/auth/login")
  await get("unknown route: GET /v1/users (no listing)", "/v1/users")
  await get("unknown route: GET /v1/tickets/:id/nope", `/v1/tickets/${FIXED_UNKNOWN}/nope`)

  // ---- login
  const adminToken = await login("login: admin, good", ADMIN.username, ADMIN.password)
  await post("login: admin, wrong password", "/v1/auth/login", {
    username: ADMIN.username,
    password: "not-the-password"
  })
  await post("login: unknown user", "/v1/auth/login", { username: `nobody_${RUN}`, password: "whatever-password" })
  await post("login: missing password", "/v1/auth/login", { username: ADMIN.username })
  await post("login: missing username", "/v1/auth/login", { password: ADMIN.password })
  await post("login: empty object", "/v1/auth/login", {})
  await post("login: empty username", "/v1/auth/login", { username: "", password: ADMIN.password })
  await post("login: username 65 chars", "/v1/auth/login", { username: "u".repeat(65), password: ADMIN.password })
  await post("login: empty password", "/v1/auth/login", { username: ADMIN.username, password: "" })
  await post("login: password 201 chars (not echoed)", "/v1/auth/login", {
    username: ADMIN.username,
    password: "p".repeat(201)
  })
  await post("login: password is a number (not echoed)", "/v1/auth/login", {
    username: ADMIN.username,
    password: 12345678
  })
  await post("login: username is a number", "/v1/auth/login", { username: 42, password: ADMIN.password })
  await post("login: NUL in username", "/v1/auth/login", { username: "adm\u0000in", password: ADMIN.password })
  await post("login: body is an array", "/v1/auth/login", [ADMIN.username, ADMIN.password])
  await postRaw("login: body is null", "/v1/auth/login", "null")
  await postRaw("login: malformed JSON", "/v1/auth/login", `{"username": "${ADMIN.username}", "password": `)
  await postRaw(
    "login: text/plain",
    "/v1/auth/login",
    JSON.stringify({ username: ADMIN.username, password: ADMIN.password }),
    undefined,
    {
      contentType: "text/plain"
    }
  )
  await postRaw(
    "login: no content-type",
    "/v1/auth/login",
    JSON.stringify({ username: ADMIN.username, password: ADMIN.password }),
    undefined,
    {
      contentType: null
    }
  )
  await postRaw("login: empty body", "/v1/auth/login", "")
  await postRaw("login: nested 65 deep", "/v1/auth/login", nested(65))
  await postRaw("login: body over 64 KiB", "/v1/auth/login", overLimit)
  await post("login: admin, good, with an extra field", "/v1/auth/login", {
    username: ADMIN.username,
    password: ADMIN.password,
    role: "customer"
  })

  // ---- users
  const createUser = async (name: string, username: string, role: string) => {
    const reply = expectStatus(
      await post(name, "/v1/users", { username, password: PASSWORD, role }, adminToken),
      201,
      name
    )
    const id = (reply.json as { id: string }).id
    createdUserIds.add(id)
    return id
  }
  const agentName = `corpus_agent_${RUN}`
  const agentId = await createUser("users.create: agent", agentName, "agent")
  const custAId = await createUser("users.create: customer A", `corpus_cust_a_${RUN}`, "customer")
  await createUser("users.create: customer B", `corpus_cust_b_${RUN}`, "customer")
  const goneCustId = await createUser("users.create: customer to be deleted", `corpus_gone_cust_${RUN}`, "customer")
  const goneAgentId = await createUser("users.create: agent to be deleted", `corpus_gone_agent_${RUN}`, "agent")
  const goneAdminId = await createUser("users.create: admin to be deleted", `corpus_gone_admin_${RUN}`, "admin")
  await post(
    "users.create: username taken",
    "/v1/users",
    { username: agentName, password: PASSWORD, role: "agent" },
    adminToken
  )
  await post("users.create: invalid role", "/v1/users", {
    username: `corpus_x_${RUN}`,
    password: PASSWORD,
    role: "root"
  }, adminToken)
  await post(
    "users.create: username too short",
    "/v1/users",
    { username: "ab", password: PASSWORD, role: "agent" },
    adminToken
  )
  await post("users.create: username with a space", "/v1/users", {
    username: "corpus x",
    password: PASSWORD,
    role: "agent"
  }, adminToken)
  await post("users.create: username 65 chars", "/v1/users", {
    username: "u".repeat(65),
    password: PASSWORD,
    role: "agent"
  }, adminToken)
  await post("users.create: password too short (not echoed)", "/v1/users", {
    username: `corpus_x_${RUN}`,
    password: "short",
    role: "agent"
  }, adminToken)
  await post("users.create: password 201 chars (not echoed)", "/v1/users", {
    username: `corpus_x_${RUN}`,
    password: "p".repeat(201),
    role: "agent"
  }, adminToken)
  await post("users.create: missing password", "/v1/users", { username: `corpus_x_${RUN}`, role: "agent" }, adminToken)
  await post("users.create: missing role", "/v1/users", { username: `corpus_x_${RUN}`, password: PASSWORD }, adminToken)
  await post(
    "users.create: username is a number",
    "/v1/users",
    { username: 12345, password: PASSWORD, role: "agent" },
    adminToken
  )
  await postRaw(
    "users.create: text/plain",
    "/v1/users",
    JSON.stringify({ username: `corpus_x_${RUN}`, password: PASSWORD, role: "agent" }),
    adminToken,
    {
      contentType: "text/plain"
    }
  )
  await postRaw("users.create: malformed JSON", "/v1/users", "{\"username\":", adminToken)
  await post("users.create: no token", "/v1/users", { username: `corpus_x_${RUN}`, password: PASSWORD, role: "agent" })

  const agentToken = await login("login: agent", agentName, PASSWORD)
  const custAToken = await login("login: customer A", `corpus_cust_a_${RUN}`, PASSWORD)
  const custBToken = await login("login: customer B", `corpus_cust_b_${RUN}`, PASSWORD)
  const goneCustToken = await login("login: customer to be deleted", `corpus_gone_cust_${RUN}`, PASSWORD)
  const goneAgentToken = await login("login: agent to be deleted", `corpus_gone_agent_${RUN}`, PASSWORD)
  const goneAdminToken = await login("login: admin to be deleted", `corpus_gone_admin_${RUN}`, PASSWORD)

  await post("users.create: by a customer", "/v1/users", {
    username: `corpus_x_${RUN}`,
    password: PASSWORD,
    role: "admin"
  }, custAToken)
  await post("users.create: by an agent", "/v1/users", {
    username: `corpus_x_${RUN}`,
    password: PASSWORD,
    role: "customer"
  }, agentToken)
  await post("users.create: by a customer, invalid body", "/v1/users", { username: "ab" }, custAToken)

  // ---- users/me and every way a token can be wrong
  await get("users.me: admin", "/v1/users/me", adminToken)
  await get("users.me: agent", "/v1/users/me", agentToken)
  await get("users.me: customer A", "/v1/users/me", custAToken)
  const now = Math.floor(Date.now() / 1000)
  const forged = await signToken(OTHER_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    iss: "opsdesk",
    exp: now + 3600
  })
  const expired = await signToken(JWT_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    iss: "opsdesk",
    iat: now - 7200,
    exp: now - 3600
  })
  const foreignIssuer = await signToken(JWT_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    iss: "someone-else",
    exp: now + 3600
  })
  const noIssuer = await signToken(JWT_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    exp: now + 3600
  })
  const badSub = await signToken(JWT_SECRET, {
    sub: "not-a-uuid",
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    iss: "opsdesk",
    exp: now + 3600
  })
  const badRole = await signToken(JWT_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "superuser",
    iss: "opsdesk",
    exp: now + 3600
  })
  const noUsername = await signToken(JWT_SECRET, { sub: custAId, role: "customer", iss: "opsdesk", exp: now + 3600 })
  const noExp = await signToken(JWT_SECRET, {
    sub: custAId,
    username: `corpus_cust_a_${RUN}`,
    role: "customer",
    iss: "opsdesk"
  })
  const neverExisted = await signToken(JWT_SECRET, {
    sub: "0f0f0f0f-0000-4000-8000-00000000dead",
    username: `corpus_ghost_${RUN}`,
    role: "agent",
    iss: "opsdesk",
    exp: now + 3600
  })
  const [h, p] = custAToken.split(".")
  const algNone = `${b64url({ alg: "none", typ: "JWT" })}.${p}.`
  const tampered = `${h}.${b64url({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), role: "admin" })}.${
    custAToken.split(".")[2]
  }`
  const meWith = (name: string, authorization: string) =>
    get(`users.me: ${name}`, "/v1/users/me", undefined, { authorization })
  await get("users.me: no Authorization", "/v1/users/me")
  await meWith("Basic scheme", `Basic ${Buffer.from(`${ADMIN.username}:${ADMIN.password}`).toString("base64")}`)
  await meWith("'Bearer' alone", "Bearer")
  await meWith("'Bearer' and spaces", "Bearer    ")
  await meWith("lowercase 'bearer'", `bearer ${custAToken}`)
  await meWith("token after two spaces", `Bearer  ${custAToken}`)
  await meWith("token without scheme", custAToken)
  await meWith("not a JWT", "Bearer not.a.jwt")
  await meWith("garbage", "Bearer %%%")
  await meWith("tampered payload (role admin)", `Bearer ${tampered}`)
  await meWith("alg none", `Bearer ${algNone}`)
  await meWith("forged (another secret)", `Bearer ${forged}`)
  await meWith("expired", `Bearer ${expired}`)
  await meWith("foreign issuer", `Bearer ${foreignIssuer}`)
  await meWith("no issuer", `Bearer ${noIssuer}`)
  await meWith("sub not a UUID", `Bearer ${badSub}`)
  await meWith("unknown role", `Bearer ${badRole}`)
  await meWith("no username claim", `Bearer ${noUsername}`)
  await meWith("no exp claim", `Bearer ${noExp}`)
  await meWith("user that never existed", `Bearer ${neverExisted}`)

  // ---- tickets: create
  const createTicket = async (name: string, token: string, json: unknown) =>
    (expectStatus(await post(name, "/v1/tickets", json, token), 201, name).json as { id: string }).id
  const a1 = await createTicket("tickets.create: customer A, high", custAToken, {
    title: "A1 printer on fire",
    description: "smoke",
    priority: "high"
  })
  const a2 = await createTicket("tickets.create: customer A, priority 'normal' (alias)", custAToken, {
    title: "A2 slow wifi",
    description: "",
    priority: "normal"
  })
  await createTicket("tickets.create: customer A, no priority", custAToken, {
    title: "A3 no priority",
    description: "default"
  })
  const b1 = await createTicket("tickets.create: customer B, low", custBToken, {
    title: "B1 password reset",
    description: "locked out",
    priority: "low"
  })
  const s1 = await createTicket("tickets.create: agent, urgent", agentToken, {
    title: "S1 outage",
    description: "all down",
    priority: "urgent"
  })
  await createTicket("tickets.create: customer A, unknown extra fields", custAToken, {
    title: "A4 extra",
    description: "extras",
    status: "closed",
    ownerId: goneAgentId,
    id: FIXED_UNKNOWN
  })
  await createTicket("tickets.create: customer A, title 200 chars", custAToken, {
    title: "t".repeat(200),
    description: "long title",
    priority: "low"
  })
  await post("tickets.create: missing title", "/v1/tickets", { description: "d" }, custAToken)
  await post("tickets.create: missing description", "/v1/tickets", { title: "t" }, custAToken)
  await post("tickets.create: empty title", "/v1/tickets", { title: "", description: "d" }, custAToken)
  await post("tickets.create: blank title", "/v1/tickets", { title: "   ", description: "d" }, custAToken)
  await post("tickets.create: title 201 chars", "/v1/tickets", { title: "t".repeat(201), description: "d" }, custAToken)
  await post(
    "tickets.create: description 10001 chars",
    "/v1/tickets",
    { title: "t", description: "d".repeat(10_001) },
    custAToken
  )
  await post("tickets.create: title is a number", "/v1/tickets", { title: 42, description: "d" }, custAToken)
  await post(
    "tickets.create: invalid priority",
    "/v1/tickets",
    { title: "t", description: "d", priority: "critical" },
    custAToken
  )
  await post(
    "tickets.create: priority null",
    "/v1/tickets",
    { title: "t", description: "d", priority: null },
    custAToken
  )
  await post("tickets.create: NUL in title", "/v1/tickets", { title: "a\u0000b", description: "d" }, custAToken)
  await postRaw(
    "tickets.create: unpaired surrogate in description",
    "/v1/tickets",
    "{\"title\":\"t\",\"description\":\"\\ud800\"}",
    custAToken
  )
  await post("tickets.create: body is an array", "/v1/tickets", [{ title: "t", description: "d" }], custAToken)
  await post("tickets.create: body is a string", "/v1/tickets", "title", custAToken)
  await postRaw("tickets.create: malformed JSON", "/v1/tickets", "{\"title\": \"t\", ", custAToken)
  await postRaw("tickets.create: not JSON at all", "/v1/tickets", "title=t&description=d", custAToken)
  await postRaw(
    "tickets.create: text/plain",
    "/v1/tickets",
    JSON.stringify({ title: "t", description: "d" }),
    custAToken,
    { contentType: "text/plain" }
  )
  await postRaw("tickets.create: form content-type", "/v1/tickets", "title=t&description=d", custAToken, {
    contentType: "application/x-www-form-urlencoded"
  })
  await postRaw(
    "tickets.create: no content-type, JSON body",
    "/v1/tickets",
    JSON.stringify({ title: "A5 no content-type", description: "d" }),
    custAToken,
    {
      contentType: null
    }
  )
  await postRaw(
    "tickets.create: application/json; charset=utf-8",
    "/v1/tickets",
    JSON.stringify({ title: "A6 charset", description: "d" }),
    custAToken,
    {
      contentType: "application/json; charset=utf-8"
    }
  )
  await postRaw("tickets.create: empty body", "/v1/tickets", "", custAToken)
  await postRaw("tickets.create: nested 64 deep", "/v1/tickets", nested(64), custAToken)
  await postRaw("tickets.create: nested 65 deep", "/v1/tickets", nested(65), custAToken)
  await postRaw("tickets.create: nested 5000 deep", "/v1/tickets", nested(5000), custAToken)
  await postRaw("tickets.create: body over 64 KiB", "/v1/tickets", overLimit, custAToken)
  await postRaw("tickets.create: chunked body over 64 KiB", "/v1/tickets", overLimit, custAToken, { chunked: true })
  await postRaw(
    "tickets.create: chunked body, small",
    "/v1/tickets",
    JSON.stringify({ title: "A7 chunked", description: "d" }),
    custAToken,
    {
      chunked: true
    }
  )
  await post("tickets.create: no token", "/v1/tickets", { title: "t", description: "d" })
  await post("tickets.create: forged token", "/v1/tickets", { title: "t", description: "d" }, forged)
  await post("tickets.create: expired token", "/v1/tickets", { title: "t", description: "d" }, expired)
  await post("tickets.create: no token, invalid body", "/v1/tickets", { title: 1 })

  // ---- tickets: get
  await get("tickets.get: owner", `/v1/tickets/${a1}`, custAToken)
  await get("tickets.get: another customer's ticket", `/v1/tickets/${b1}`, custAToken)
  await get("tickets.get: customer B, A's ticket", `/v1/tickets/${a1}`, custBToken)
  await get("tickets.get: agent", `/v1/tickets/${a1}`, agentToken)
  await get("tickets.get: admin", `/v1/tickets/${b1}`, adminToken)
  await get("tickets.get: uppercase id", `/v1/tickets/${a1.toUpperCase()}`, custAToken)
  await get("tickets.get: invalid uuid", "/v1/tickets/not-a-uuid", custAToken)
  await get("tickets.get: unknown id", `/v1/tickets/${FIXED_UNKNOWN}`, custAToken)
  await get("tickets.get: no token", `/v1/tickets/${a1}`)
  await get("tickets.get: no token, invalid uuid", "/v1/tickets/not-a-uuid")
  await get("tickets.get: forged token", `/v1/tickets/${a1}`, forged)
  await get("tickets.get: expired token", `/v1/tickets/${a1}`, expired)

  // ---- tickets: update
  await patch(
    "tickets.update: owner edits title",
    `/v1/tickets/${a1}`,
    { title: "A1 printer on fire (edited)" },
    custAToken
  )
  await patch("tickets.update: owner, same title (no-op)", `/v1/tickets/${a1}`, {
    title: "A1 printer on fire (edited)"
  }, custAToken)
  await patch("tickets.update: owner edits description and priority", `/v1/tickets/${a1}`, {
    description: "more smoke",
    priority: "urgent"
  }, custAToken)
  await patch("tickets.update: empty patch", `/v1/tickets/${a1}`, {}, custAToken)
  await patch("tickets.update: only unknown fields", `/v1/tickets/${a1}`, { status: "closed" }, custAToken)
  await patch("tickets.update: customer assigns", `/v1/tickets/${a1}`, { assigneeId: agentId }, custAToken)
  await patch("tickets.update: customer unassigns (null)", `/v1/tickets/${a1}`, { assigneeId: null }, custAToken)
  await patch("tickets.update: customer, another's ticket", `/v1/tickets/${b1}`, { title: "mine now" }, custAToken)
  await patch(
    "tickets.update: customer assigns another's ticket",
    `/v1/tickets/${b1}`,
    { assigneeId: agentId },
    custAToken
  )
  await patch("tickets.update: agent assigns to agent", `/v1/tickets/${a1}`, { assigneeId: agentId }, agentToken)
  await patch("tickets.update: agent assigns same agent again (no-op)", `/v1/tickets/${a1}`, {
    assigneeId: agentId.toUpperCase()
  }, agentToken)
  await patch("tickets.update: agent assigns to a customer", `/v1/tickets/${a1}`, { assigneeId: custAId }, agentToken)
  await patch(
    "tickets.update: agent assigns to an unknown user",
    `/v1/tickets/${a1}`,
    { assigneeId: FIXED_UNKNOWN },
    agentToken
  )
  await patch("tickets.update: assigneeId not a uuid", `/v1/tickets/${a1}`, { assigneeId: "bob" }, agentToken)
  await patch("tickets.update: agent sets priority 'normal'", `/v1/tickets/${a1}`, { priority: "normal" }, agentToken)
  await patch("tickets.update: invalid priority", `/v1/tickets/${a1}`, { priority: "asap" }, agentToken)
  await patch("tickets.update: title 201 chars", `/v1/tickets/${a1}`, { title: "t".repeat(201) }, agentToken)
  await patch("tickets.update: blank title", `/v1/tickets/${a1}`, { title: " " }, agentToken)
  await patch(
    "tickets.update: description 10001 chars",
    `/v1/tickets/${a1}`,
    { description: "d".repeat(10_001) },
    agentToken
  )
  await patch(
    "tickets.update: admin assigns to admin",
    `/v1/tickets/${b1}`,
    { assigneeId: actualAdminId(adminToken) },
    adminToken
  )
  await patch("tickets.update: admin unassigns", `/v1/tickets/${b1}`, { assigneeId: null }, adminToken)
  await patch("tickets.update: admin assigns to the agent", `/v1/tickets/${s1}`, { assigneeId: agentId }, adminToken)
  await patch("tickets.update: unknown ticket", `/v1/tickets/${FIXED_UNKNOWN}`, { title: "x" }, agentToken)
  await patch("tickets.update: invalid uuid", "/v1/tickets/123", { title: "x" }, agentToken)
  await patch("tickets.update: no token", `/v1/tickets/${a1}`, { title: "x" })
  await patch("tickets.update: expired token", `/v1/tickets/${a1}`, { title: "x" }, expired)
  await rec({
    name: "tickets.update: malformed JSON",
    method: "PATCH",
    path: `/v1/tickets/${a1}`,
    raw: "{\"title\":",
    token: agentToken
  })
  await rec({
    name: "tickets.update: text/plain",
    method: "PATCH",
    path: `/v1/tickets/${a1}`,
    raw: "{\"title\":\"x\"}",
    contentType: "text/plain",
    token: agentToken
  })
  await rec({
    name: "tickets.update: nested 65 deep",
    method: "PATCH",
    path: `/v1/tickets/${a1}`,
    raw: nested(65),
    token: agentToken
  })
  await rec({
    name: "tickets.update: body over 64 KiB",
    method: "PATCH",
    path: `/v1/tickets/${a1}`,
    raw: overLimit,
    token: agentToken
  })

  // ---- tickets: status
  const status = (name: string, id: string, to: unknown, token?: string) =>
    post(`tickets.status: ${name}`, `/v1/tickets/${id}/status`, { status: to }, token)
  await status("customer, open → in_progress", a1, "in_progress", custAToken)
  await status("agent, open → in_progress", a1, "in_progress", agentToken)
  await status("agent, in_progress → in_progress", a1, "in_progress", agentToken)
  await status("agent, in_progress → closed", a1, "closed", agentToken)
  await status("agent, in_progress → open", a1, "open", agentToken)
  await status("agent, in_progress → resolved", a1, "resolved", agentToken)
  await status("customer, resolved → closed", a1, "closed", custAToken)
  await status("customer, closed → closed", a1, "closed", custAToken)
  await status("customer, closed → open (reopen)", a1, "open", custAToken)
  await status("customer, open → open", a1, "open", custAToken)
  await status("customer, open → resolved", a1, "resolved", custAToken)
  await status("customer, open → closed", a2, "closed", custAToken)
  await status("customer B, A's ticket", a1, "closed", custBToken)
  await status("admin, open → in_progress", s1, "in_progress", adminToken)
  await status("invalid status", a1, "done", agentToken)
  await status("status is a number", a1, 1, agentToken)
  await post("tickets.status: missing status", `/v1/tickets/${a1}/status`, {}, agentToken)
  await status("unknown ticket", FIXED_UNKNOWN, "open", agentToken)
  await status("invalid uuid", "nope", "open", agentToken)
  await status("no token", a1, "open")
  await status("forged token", a1, "open", forged)
  await postRaw("tickets.status: malformed JSON", `/v1/tickets/${a1}/status`, "{\"status\"", agentToken)
  await postRaw("tickets.status: text/plain", `/v1/tickets/${a1}/status`, "{\"status\":\"open\"}", agentToken, {
    contentType: "text/plain"
  })

  // ---- messages
  const message = (name: string, json: unknown, token?: string) =>
    post(`messages.create: ${name}`, "/v1/messages", json, token)
  expectStatus(
    await message("owner", { ticketId: a1, content: "It is still burning" }, custAToken),
    201,
    "first message"
  )
  await message("agent", { ticketId: a1, content: "On my way" }, agentToken)
  await message("owner again", { ticketId: a1, content: "Thanks!" }, custAToken)
  await message("customer B on A's ticket", { ticketId: a1, content: "hi" }, custBToken)
  await message("customer A on B's ticket", { ticketId: b1, content: "hi" }, custAToken)
  await message("agent on B's ticket", { ticketId: b1, content: "We reset it" }, agentToken)
  await message("content 10000 chars", { ticketId: b1, content: "m".repeat(10_000) }, custBToken)
  await message("unknown ticket", { ticketId: FIXED_UNKNOWN, content: "hi" }, agentToken)
  await message("empty content", { ticketId: a1, content: "" }, custAToken)
  await message("blank content", { ticketId: a1, content: "  \n " }, custAToken)
  await message("content 10001 chars", { ticketId: a1, content: "m".repeat(10_001) }, custAToken)
  await message("content is a number", { ticketId: a1, content: 7 }, custAToken)
  await message("NUL in content", { ticketId: a1, content: "a\u0000" }, custAToken)
  await message("missing ticketId", { content: "hi" }, custAToken)
  await message("missing content", { ticketId: a1 }, custAToken)
  await message("ticketId not a uuid", { ticketId: "abc", content: "hi" }, custAToken)
  await message("no token", { ticketId: a1, content: "hi" })
  await message("expired token", { ticketId: a1, content: "hi" }, expired)
  await postRaw("messages.create: malformed JSON", "/v1/messages", "{\"ticketId\"", custAToken)
  await postRaw(
    "messages.create: text/plain",
    "/v1/messages",
    JSON.stringify({ ticketId: a1, content: "hi" }),
    custAToken,
    { contentType: "text/plain" }
  )
  await postRaw(
    "messages.create: nested 65 deep",
    "/v1/messages",
    `{"ticketId":"${a1}","content":${nested(65)}}`,
    custAToken
  )
  await postRaw("messages.create: body over 64 KiB", "/v1/messages", overLimit, custAToken)

  const messages = (name: string, id: string, query: string, token?: string) =>
    get(`messages.list: ${name}`, `/v1/tickets/${id}/messages${query}`, token)
  await messages("owner", a1, "", custAToken)
  await messages("agent", a1, "", agentToken)
  await messages("admin", b1, "", adminToken)
  const page1 = await messages("owner, limit=1", a1, "?limit=1", custAToken)
  const page2 = await messages("owner, limit=1, page 2", a1, `?limit=1&cursor=${cursorOf(page1)}`, custAToken)
  await messages("owner, limit=1, page 3 (last)", a1, `?limit=1&cursor=${cursorOf(page2)}`, custAToken)
  await messages("owner, limit=2, cursor of page 2", a1, `?limit=2&cursor=${cursorOf(page1)}`, custAToken)
  const crafted = Buffer.from(`2000-01-01T00:00:00.000000Z|${FIXED_UNKNOWN}`).toString("base64url")
  await messages("crafted cursor (2000-01-01)", a1, `?cursor=${crafted}`, custAToken)
  await messages("cursor of another ticket", b1, `?cursor=${cursorOf(page1)}`, agentToken)
  await messages("invalid cursor", a1, "?cursor=abc", custAToken)
  await messages("cursor with invalid characters", a1, "?cursor=a%2Bb%2F", custAToken)
  await messages(
    "cursor with an impossible date",
    a1,
    `?cursor=${Buffer.from(`2024-02-31T00:00:00.000000Z|${FIXED_UNKNOWN}`).toString("base64url")}`,
    custAToken
  )
  await messages("cursor 257 chars", a1, `?cursor=${"a".repeat(257)}`, custAToken)
  await messages("limit=0", a1, "?limit=0", custAToken)
  await messages("limit=101", a1, "?limit=101", custAToken)
  await messages("limit=100", a1, "?limit=100", custAToken)
  await messages("limit=abc", a1, "?limit=abc", custAToken)
  await messages("limit=1.5", a1, "?limit=1.5", custAToken)
  await messages("limit=-1", a1, "?limit=-1", custAToken)
  await messages("customer B, A's ticket", a1, "", custBToken)
  await messages("customer B, A's ticket, invalid cursor", a1, "?cursor=abc", custBToken)
  await messages("unknown ticket", FIXED_UNKNOWN, "", agentToken)
  await messages("invalid uuid", "xyz", "", agentToken)
  await messages("no token", a1, "")
  await messages("forged token", a1, "", forged)

  // ---- users deleted after their token was issued
  db = db ?? (await connectDb())
  await db.query("DELETE FROM users WHERE id = ANY($1::uuid[])", [[goneCustId, goneAgentId, goneAdminId]])
  await get("deleted customer: users.me", "/v1/users/me", goneCustToken)
  await post("deleted customer: tickets.create", "/v1/tickets", { title: "ghost", description: "d" }, goneCustToken)
  await get("deleted customer: tickets.get", `/v1/tickets/${a1}`, goneCustToken)
  await get("deleted customer: tickets.list", "/v1/tickets?limit=20", goneCustToken)
  await message("deleted customer", { ticketId: a1, content: "boo" }, goneCustToken)
  await get("deleted agent: users.me", "/v1/users/me", goneAgentToken)
  await post("deleted agent: tickets.create", "/v1/tickets", { title: "ghost", description: "d" }, goneAgentToken)
  await get("deleted agent: tickets.get", `/v1/tickets/${s1}`, goneAgentToken)
  await message("deleted agent", { ticketId: s1, content: "boo" }, goneAgentToken)
  await patch("deleted agent: assigns to itself", `/v1/tickets/${s1}`, { assigneeId: goneAgentId }, goneAgentToken)
  await patch(
    "deleted agent: edits the title",
    `/v1/tickets/${s1}`,
    { title: "S1 outage (edited by a deleted agent)" },
    goneAgentToken
  )
  await status("deleted agent, in_progress → resolved", s1, "resolved", goneAgentToken)
  await post("deleted agent: users.create", "/v1/users", {
    username: `corpus_y_${RUN}`,
    password: PASSWORD,
    role: "customer"
  }, goneAgentToken)
  await get("deleted admin: users.me", "/v1/users/me", goneAdminToken)
  await post("deleted admin: users.create", "/v1/users", {
    username: `corpus_made_by_ghost_${RUN}`,
    password: PASSWORD,
    role: "customer"
  }, goneAdminToken)
  await get("deleted admin: ops.dlq", "/ops/api/dlq", goneAdminToken)
  await post("login: deleted customer", "/v1/auth/login", { username: `corpus_gone_cust_${RUN}`, password: PASSWORD })

  // ---- login lockout (a username of its own: 5 failures lock it)
  const locked = `corpus_locked_${RUN}`
  for (let i = 1; i <= 5; i++) {
    await post(`login lockout: failure ${i}`, "/v1/auth/login", { username: locked, password: `guess-number-${i}` })
  }
  await post("login lockout: locked", "/v1/auth/login", { username: locked, password: "guess-number-6" }, undefined, {
    mask: maskLockout
  })
  await post("login lockout: locked, invalid body still 400", "/v1/auth/login", { username: locked }, undefined, {
    mask: maskLockout
  })

  // ---- ops dashboard (the DLQ is the test's own vhost's)
  await get("ops.overview: admin, empty DLQ", "/ops/api/overview", adminToken, { mask: maskOverview })
  await get("ops.overview: dlqLimit=1", "/ops/api/overview?dlqLimit=1", adminToken, { mask: maskOverview })
  await get("ops.overview: dlqLimit=0", "/ops/api/overview?dlqLimit=0", adminToken)
  await get("ops.overview: dlqLimit=501", "/ops/api/overview?dlqLimit=501", adminToken)
  await get("ops.overview: dlqLimit=abc", "/ops/api/overview?dlqLimit=abc", adminToken)
  await get("ops.overview: agent", "/ops/api/overview", agentToken)
  await get("ops.overview: customer", "/ops/api/overview", custAToken)
  await get("ops.overview: no token", "/ops/api/overview")
  await get("ops.overview: expired token", "/ops/api/overview", expired)
  await get("ops.dlq: empty", "/ops/api/dlq", adminToken)
  await publishToDlq(amqpUrl)
  const listed = await get("ops.dlq: four entries", "/ops/api/dlq", adminToken, { mask: maskDlqList })
  const idOf = (label: string) => {
    const index = dlqMessages.findIndex((m) => m.label === label)
    const entries = obj(listed.json)?.entries
    const entry = Array.isArray(entries) ? entries[index] : undefined
    if (entry === undefined) {
      throw new Error(`DLQ entry ${label} not listed: ${listed.raw.toString("utf8").slice(0, 500)}`)
    }
    return entry.id as string
  }
  await get("ops.overview: admin, four in the DLQ", "/ops/api/overview", adminToken, { mask: maskOverview })
  await get("ops.dlq: limit=1", "/ops/api/dlq?limit=1", adminToken, { mask: maskDlqList })
  await get("ops.dlq: event=ticket.created", "/ops/api/dlq?event=ticket.created", adminToken, { mask: maskDlqList })
  await get("ops.dlq: event=no.such.event", "/ops/api/dlq?event=no.such.event", adminToken, { mask: maskDlqList })
  await get("ops.dlq: limit=0", "/ops/api/dlq?limit=0", adminToken)
  await get("ops.dlq: limit=501", "/ops/api/dlq?limit=501", adminToken)
  await get("ops.dlq: empty event", "/ops/api/dlq?event=", adminToken)
  await get("ops.dlq: agent", "/ops/api/dlq", agentToken)
  await get("ops.dlq: no token", "/ops/api/dlq")
  await post("ops.replay: empty body", "/ops/api/dlq/replay", {}, adminToken)
  await post("ops.replay: all false", "/ops/api/dlq/replay", { all: false }, adminToken)
  await post("ops.replay: empty id", "/ops/api/dlq/replay", { id: "" }, adminToken)
  await post("ops.replay: id 65 chars", "/ops/api/dlq/replay", { id: "i".repeat(65) }, adminToken)
  await post("ops.replay: unknown id", "/ops/api/dlq/replay", { id: "0000000000000000" }, adminToken)
  await post("ops.replay: poison", "/ops/api/dlq/replay", { id: idOf("poison") }, adminToken)
  await post("ops.replay: agent", "/ops/api/dlq/replay", { id: idOf("failed") }, agentToken)
  await post("ops.replay: customer", "/ops/api/dlq/replay", { all: true }, custAToken)
  await post("ops.replay: no token", "/ops/api/dlq/replay", { all: true })
  await postRaw("ops.replay: text/plain", "/ops/api/dlq/replay", "{\"all\":true}", adminToken, {
    contentType: "text/plain"
  })
  await post("ops.replay: failed entry", "/ops/api/dlq/replay", { id: idOf("failed") }, adminToken)
  await post("ops.replay: the same entry again", "/ops/api/dlq/replay", { id: idOf("failed") }, adminToken)
  await post("ops.discard: empty body", "/ops/api/dlq/discard", {}, adminToken)
  await post("ops.discard: agent", "/ops/api/dlq/discard", { id: idOf("failed (to discard)") }, agentToken)
  await post("ops.discard: unknown id", "/ops/api/dlq/discard", { id: "0000000000000000" }, adminToken)
  await post("ops.discard: an entry", "/ops/api/dlq/discard", { id: idOf("failed (to discard)") }, adminToken)
  await post(
    "ops.discard: the same entry again",
    "/ops/api/dlq/discard",
    { id: idOf("failed (to discard)") },
    adminToken
  )
  await get("ops.dlq: two left", "/ops/api/dlq", adminToken, { mask: maskDlqList })
  await post("ops.replay: all", "/ops/api/dlq/replay", { all: true }, adminToken)
  await get("ops.dlq: the poison one left", "/ops/api/dlq", adminToken, { mask: maskDlqList })
  await rec({ name: "ops.purge: agent", method: "POST", path: "/ops/api/dlq/purge", token: agentToken })
  await rec({ name: "ops.purge: customer", method: "POST", path: "/ops/api/dlq/purge", token: custAToken })
  await rec({ name: "ops.purge: no token", method: "POST", path: "/ops/api/dlq/purge" })
  await rec({ name: "ops.purge: admin", method: "POST", path: "/ops/api/dlq/purge", token: adminToken })
  await rec({ name: "ops.purge: admin, empty DLQ", method: "POST", path: "/ops/api/dlq/purge", token: adminToken })
  await get("ops.overview: admin, DLQ purged", "/ops/api/overview", adminToken, { mask: maskOverview })

  // ---- ticket listings: after every ticket write (only the worker invalidates the cache)
  const list = (name: string, query: string, token?: string, extra: Partial<Spec> = {}) =>
    get(`tickets.list: ${name}`, `/v1/tickets${query}`, token, extra)
  await list("customer A, limit=20", "?limit=20", custAToken)
  await list("customer A, limit=20, again (cached)", "?limit=20", custAToken)
  await list("customer A, no query (same cache entry as limit=20)", "", custAToken)
  await list("customer A, status=open", "?status=open", custAToken)
  await list("customer A, status=closed", "?status=closed", custAToken)
  await list("customer A, priority=medium", "?priority=medium", custAToken)
  await list("customer A, status=open&priority=low", "?status=open&priority=low", custAToken)
  await list("customer A, status=open&priority=low, other order", "?priority=low&status=open", custAToken)
  await list("customer A, assigneeId=agent", `?assigneeId=${agentId}`, custAToken)
  await list("customer A, unknown parameter", "?foo=bar", custAToken)
  const first = await list("customer A, limit=2", "?limit=2", custAToken)
  const second = await list("customer A, limit=2, page 2", `?limit=2&cursor=${cursorOf(first)}`, custAToken)
  await list("customer A, limit=2, page 3", `?limit=2&cursor=${cursorOf(second)}`, custAToken)
  await list("customer A, limit=2, page 2 again (cached)", `?limit=2&cursor=${cursorOf(first)}`, custAToken)
  await list("customer A, crafted cursor (2000-01-01)", `?cursor=${crafted}`, custAToken)
  await list("customer A, status=done", "?status=done", custAToken)
  await list("customer A, priority=normal", "?priority=normal", custAToken)
  await list("customer A, limit=0", "?limit=0", custAToken)
  await list("customer A, limit=101", "?limit=101", custAToken)
  await list("customer A, limit=abc", "?limit=abc", custAToken)
  await list("customer A, limit=1.5", "?limit=1.5", custAToken)
  await list("customer A, invalid cursor", "?cursor=abc", custAToken)
  await list("customer A, cursor 257 chars", `?cursor=${"a".repeat(257)}`, custAToken)
  await list("customer A, assigneeId not a uuid", "?assigneeId=bob", custAToken)
  await list("customer A, status twice", "?status=open&status=closed", custAToken)
  await list("customer A, limit twice", "?limit=1&limit=2", custAToken)
  await list("customer B, limit=20", "?limit=20", custBToken)
  await list("customer B, limit=20, again (cached)", "?limit=20", custBToken)
  await list("agent, assigneeId=agent", `?assigneeId=${agentId}`, agentToken)
  await list("agent, assigneeId=agent, again (cached)", `?assigneeId=${agentId}`, agentToken)
  await list("admin, assigneeId=agent&status=in_progress", `?assigneeId=${agentId}&status=in_progress`, adminToken)
  await list("admin, assigneeId=unknown user", `?assigneeId=${FIXED_UNKNOWN}`, adminToken)
  await list("admin, every ticket", "?limit=5", adminToken, { mask: maskStaffListing })
  await list("no token", "?limit=20")
  await list("malformed Authorization", "?limit=20", undefined, { authorization: "Token abc" })
  await list("forged token", "?limit=20", forged)
  await list("expired token", "?limit=20", expired)
  await list("tampered token", "?limit=20", tampered)
  await list("no token, invalid query", "?limit=0")

  // ---- HTTP protocol errors, on a raw socket
  // Recorded as method RAW, path: the request line sent.
  const rawReq = (name: string, bytes: string) =>
    rec({ name: `protocol: ${name}`, method: "RAW", path: bytes.slice(0, bytes.indexOf("\r\n")), rawSocket: bytes })
  await rawReq("HTTP/1.1 without Host", "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
  await rawReq("HTTP/1.0 without Host", "GET /health HTTP/1.0\r\n\r\n")
  await rawReq(
    "Expect other than 100-continue",
    "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
  )
  await rawReq(
    "headers over 16 KiB",
    `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`
  )
  await rawReq("malformed request line", "GARBAGE\r\n\r\n")
  await rawReq(
    "invalid Content-Length",
    "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}"
  )
}

/** The admin's id is in its token's `sub` (the admin was created by the process, not through the API). */
const actualAdminId = (token: string): string =>
  JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")).sub

const connectDb = async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
  await client.connect()
  return client
}

/** Every row this run made: its users (by the run's suffix, and the ones deleted on purpose), their tickets, messages, audit and outbox rows. */
const cleanUp = async (client: pg.Client) => {
  const users = await client.query<{ id: string }>("SELECT id::text FROM users WHERE username LIKE $1", [`%${RUN}%`])
  const userIds = [...new Set([...createdUserIds, ...users.rows.map((r) => r.id)])]
  if (userIds.length === 0) return
  const tickets = await client.query<{ id: string }>(
    "SELECT id::text FROM tickets WHERE owner_id = ANY($1::uuid[]) OR assignee_id = ANY($1::uuid[])",
    [userIds]
  )
  const ticketIds = tickets.rows.map((r) => r.id)
  const messages = await client.query<{ id: string }>(
    "SELECT id::text FROM messages WHERE ticket_id = ANY($1::uuid[]) OR author_id = ANY($2::uuid[])",
    [ticketIds, userIds]
  )
  const messageIds = messages.rows.map((r) => r.id)
  const entityIds = [...userIds, ...ticketIds, ...messageIds]
  await client.query("BEGIN")
  try {
    await client.query(
      `DELETE FROM outbox WHERE (envelope::jsonb #>> '{payload,id}') = ANY($1::text[])
         OR (envelope::jsonb #>> '{payload,ticketId}') = ANY($2::text[])`,
      [[...ticketIds, ...messageIds], ticketIds]
    )
    await client.query("DELETE FROM audit_log WHERE actor_id = ANY($1::uuid[]) OR entity_id = ANY($2::text[])", [
      userIds,
      entityIds
    ])
    await client.query("DELETE FROM messages WHERE id = ANY($1::uuid[])", [messageIds])
    await client.query("DELETE FROM tickets WHERE id = ANY($1::uuid[])", [ticketIds])
    await client.query("DELETE FROM users WHERE id = ANY($1::uuid[])", [userIds])
    await client.query("COMMIT")
  } catch (e) {
    await client.query("ROLLBACK")
    throw e
  }
}

describe("HTTP request corpus (golden file)", () => {
  beforeAll(async () => {
    vhost = await createVhost("corpus")
    const port = await freePort()
    api = await startApi({
      port,
      env: {
        DATABASE_URL: process.env.DATABASE_URL ?? "",
        AMQP_URL: vhost.url,
        JWT_SECRET,
        JWT_EXPIRES_IN_SECONDS: "3600",
        ADMIN_USERNAME: ADMIN.username,
        ADMIN_PASSWORD: ADMIN.password,
        // The run's namespace (vitest.config.ts), and this file's own within it: no other file's failed logins count here.
        LOGIN_THROTTLE_PREFIX: `${process.env.LOGIN_THROTTLE_PREFIX ?? "opsdesk-test:"}corpus-${RUN}:`,
        WORKER_METRICS_URL,
        // The dead letters carry a fixed failure time (their ids hash their bytes): keep them replayable for years
        // (the refusal of older ones is test/retention's), with the dedupe window still longer as it must be.
        DLQ_REPLAY_WINDOW: "3650 days",
        RETENTION_PROCESSED_EVENTS: "3660 days",
        LOG_LEVEL: "warn"
      }
    })
    db = await connectDb()
    await runCorpus(port, vhost.url)
  }, 240_000)

  afterAll(async () => {
    try {
      if (api !== undefined) await api.stop()
    } finally {
      try {
        if (db !== undefined) {
          await cleanUp(db)
          await db.end()
        }
      } finally {
        if (vhost !== undefined) await deleteVhost(vhost.vhost)
      }
    }
  }, 60_000)

  if (golden === undefined) {
    it.effect("records the golden file", () =>
      Effect.sync(() => {
        const doc: Golden = {
          note: "Recorded by test/api/corpus.test.ts against the production bundle; UPDATE_CORPUS=1 records it anew. " +
            "Normalised: <uuid:N> by first appearance, <ts>, <jwt>, <cursor>, <run> (the run's random suffix), <c×N> runs of a character.",
          entries: actual
        }
        writeFileSync(GOLDEN_URL, JSON.stringify(doc, null, 2) + "\n")
        expect(actual.length).toBeGreaterThan(0)
      }))
  } else {
    it.effect("sends the same requests, in the same order", () =>
      Effect.sync(() =>
        expect(actual.map((e) => `${e.name}: ${e.method} ${e.path}`)).toEqual(
          golden.entries.map((e) => `${e.name}: ${e.method} ${e.path}`)
        )
      ))
    golden.entries.forEach((expected, i) => {
      it.effect(`#${String(i + 1).padStart(3, "0")} ${expected.name}`, () =>
        Effect.sync(() => expect(actual.find((e) => e.name === expected.name)).toEqual(expected)))
    })
  }
})
