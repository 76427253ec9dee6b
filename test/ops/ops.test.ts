/**
 * The ops dashboard's endpoints through the real HTTP server, PostgreSQL and
 * RabbitMQ (a vhost of this file's own). The worker's Prometheus endpoint is
 * a stand-in whose answer each test sets; the real one is scraped in
 * ops.browser.test.ts.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import type { ConfirmChannel } from "amqplib"
import { Context, Effect, Layer } from "effect"
import { declareTopology, DLQ, EXCHANGE, queueFor, QUEUES } from "../../src/Broker/Topology.js"
import { DeliveryList, DlqList, DlqMessage, History, Overview, ReplayResponse } from "../../src/Ops/Domain.js"
import { call, decode, get, post } from "../api/support/Client.js"
import { makeFixtures } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { bodyOf, deadLetter, depth, drain, reset } from "../dlq/support.js"
import { configFrom, messageSent, ticketCreated, waitUntil, withAmqp, withVhost } from "../support/Env.js"
import { type FakeMetrics, fakeMetricsServer, workerMetricsText } from "./support.js"

class TestBroker extends Context.Tag("test/ops/TestBroker")<
  TestBroker,
  { readonly channel: ConfirmChannel; readonly worker: FakeMetrics }
>() {}

/** The API under test, its Dlq on this file's vhost and its scrape pointed at the stand-in. */
const TestEnv = Layer.scopedContext(
  Effect.gen(function*() {
    const { url } = yield* withVhost("ops")
    const { channel } = yield* withAmqp(url)
    yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })
    const worker = yield* fakeMetricsServer
    const api = yield* Layer.build(apiTestLayer()).pipe(
      Effect.withConfigProvider(
        configFrom({ AMQP_URL: url, WORKER_METRICS_URL: worker.url, OPS_HISTORY_INTERVAL_MS: 200 })
      )
    )
    return Context.add(api, TestBroker, { channel, worker })
  })
)

const publish = (channel: ConfirmChannel, event: { readonly event: string; readonly eventId: string }) =>
  Effect.promise(async () => {
    channel.publish(EXCHANGE, event.event, Buffer.from(JSON.stringify(event)), {
      persistent: true,
      messageId: event.eventId
    })
    await channel.waitForConfirms()
  })

const OPS_ENDPOINTS = [
  ["GET", "/ops/api/overview", undefined],
  ["GET", "/ops/api/dlq", undefined],
  ["POST", "/ops/api/dlq/replay", { all: true }],
  ["POST", "/ops/api/dlq/discard", { id: "0123456789abcdef" }],
  ["POST", "/ops/api/dlq/purge", undefined],
  ["GET", "/ops/api/dlq/0123456789abcdef", undefined],
  ["GET", "/ops/api/history", undefined],
  ["GET", "/ops/api/deliveries", undefined],
  ["POST", "/ops/api/deliveries/retry", { all: true }]
] as const

/** Failed (or other) delivery rows of this test, removed afterwards. */
const insertDeliveries = (rows: ReadonlyArray<{ readonly channel: "email" | "webhook"; readonly state: string }>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tag = crypto.randomUUID()
    const ids: Array<string> = []
    for (const [i, r] of rows.entries()) {
      const [row] = yield* sql<{ id: string }>`
        INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, payload, state, attempts, last_error,
          created_at)
        VALUES (${`${tag}-${i}`}, ${r.channel}, ${`${tag}-${i}`}, 'ticket.created', '{}'::json, ${r.state},
          ${r.state === "failed" ? 5 : 0}, ${r.state === "failed" ? "connect ECONNREFUSED" : null},
          now() - interval '90 seconds')
        RETURNING id::text AS id`
      ids.push(row!.id)
    }
    yield* Effect.addFinalizer(() =>
      sql`DELETE FROM deliveries WHERE idempotency_key LIKE ${`${tag}-%`}`.pipe(Effect.orDie)
    )
    return ids
  })

layer(TestEnv, { excludeTestServices: true, timeout: "60 seconds" })("ops dashboard API", (it) => {
  it.scoped("no token is 401 and a non-admin is 403 on every endpoint; nothing in the DLQ is touched", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      yield* deadLetter(channel, messageSent())
      const fx = yield* makeFixtures
      const agent = yield* fx.user("agent")
      const customer = yield* fx.user("customer")
      for (const [method, path, json] of OPS_ENDPOINTS) {
        const anonymous = yield* call(method, path, { json })
        expect(anonymous.status, `${method} ${path}`).toBe(401)
        expect(anonymous.body).toMatchObject({ _tag: "Unauthorized" })
        for (const user of [agent, customer]) {
          const r = yield* call(method, path, { json, token: user.token })
          expect(r.status, `${user.role} ${method} ${path}`).toBe(403)
          expect(r.body).toMatchObject({ _tag: "Forbidden" })
        }
      }
      expect(yield* depth(channel)).toBe(1)
    }))

  it.scoped("the overview shows queue depths, the outbox backlog, the worker's counters and the DLQ", () =>
    Effect.gen(function*() {
      const { channel, worker } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")

      yield* publish(channel, ticketCreated())
      yield* publish(channel, ticketCreated())
      yield* publish(channel, messageSent())
      const dead = messageSent()
      yield* deadLetter(channel, dead, { error: "Handler exploded: boom", attempts: 4 })

      // An unpublished outbox row an hour old, and one the broker returned as unroutable (waiting for a route).
      const sql = yield* SqlClient.SqlClient
      const stale = ticketCreated()
      const returned = ticketCreated()
      yield* Effect.acquireRelease(
        sql`INSERT INTO outbox (event_id, event_type, envelope, created_at)
          VALUES (${stale.eventId}, ${stale.event}, ${JSON.stringify(stale)}::jsonb, now() - interval '1 hour')`,
        () => sql`DELETE FROM outbox WHERE event_id = ${stale.eventId}`.pipe(Effect.orDie)
      )
      yield* Effect.acquireRelease(
        sql`INSERT INTO outbox (event_id, event_type, envelope, retry_at, last_error)
          VALUES (${returned.eventId}, ${returned.event}, ${JSON.stringify(returned)}::jsonb,
            now() + interval '1 hour', 'Unroutable: no queue is bound to routing key ticket.created')`,
        () => sql`DELETE FROM outbox WHERE event_id = ${returned.eventId}`.pipe(Effect.orDie)
      )

      yield* worker.answer(
        200,
        workerMetricsText([
          { name: "opsdesk_worker_processed_total", event: "ticket.created", value: 40 },
          { name: "opsdesk_worker_processed_total", event: "message.sent", value: 2 },
          { name: "opsdesk_worker_failed_total", event: "message.sent", value: 3 },
          { name: "opsdesk_worker_poison_total", event: "message.sent", value: 1 },
          { name: "opsdesk_worker_retried_total", event: "message.sent", value: 9 },
          { name: "opsdesk_worker_duplicates_total", event: "ticket.created", value: 5 },
          { name: "opsdesk_worker_processing_seconds_sum", event: "ticket.created", value: 0.2 },
          { name: "opsdesk_worker_processing_seconds_count", event: "ticket.created", value: 40 }
        ])
      )

      const r = yield* get("/ops/api/overview", admin.token)
      expect(r.status).toBe(200)
      const o = decode(Overview, r)

      expect(o.queues).toMatchObject({ available: true, error: null })
      const depths = Object.fromEntries(o.queues.items.map((q) => [q.queue, q.messages]))
      expect(Object.keys(depths)).toEqual([...QUEUES, DLQ])
      expect(depths).toMatchObject({
        "ticket.created.queue": 2,
        "message.sent.queue": 1,
        "ticket.updated.queue": 0,
        [DLQ]: 1
      })
      expect(o.queues.items.every((q) => q.consumers === 0)).toBe(true)

      expect(o.outbox.available).toBe(true)
      expect(o.outbox.backlog).toBeGreaterThanOrEqual(1)
      expect(o.outbox.oldestUnpublishedSeconds).toBeGreaterThanOrEqual(3599)
      expect(o.outbox.unroutable).toBeGreaterThanOrEqual(1)

      expect(o.worker).toMatchObject({ available: true, error: null, url: worker.url })
      const byEvent = Object.fromEntries(o.worker.events.map((e) => [e.event, e]))
      expect(Object.keys(byEvent).sort()).toEqual([
        "message.sent",
        "ticket.created",
        "ticket.status_changed",
        "ticket.updated"
      ])
      expect(byEvent["message.sent"]).toMatchObject({
        processed: 2,
        failed: 3,
        poison: 1,
        deadLettered: 4,
        retried: 9,
        duplicates: 0,
        avgProcessingMs: null
      })
      expect(byEvent["ticket.created"]).toMatchObject({ processed: 40, duplicates: 5, deadLettered: 0 })
      expect(byEvent["ticket.created"]!.avgProcessingMs).toBeCloseTo(5, 5)
      expect(byEvent["ticket.updated"]).toMatchObject({ processed: 0, deadLettered: 0 })
      expect(o.worker.totals).toEqual({
        processed: 42,
        failed: 3,
        retried: 9,
        duplicates: 5,
        poison: 1,
        deadLettered: 4
      })

      expect(o.dlq).toMatchObject({ available: true, depth: 1, limit: 50 })
      expect(o.dlq.entries).toHaveLength(1)
      expect(o.dlq.entries[0]).toMatchObject({
        eventId: dead.eventId,
        error: "Handler exploded: boom",
        attempts: 4,
        kind: "failed"
      })

      // Looking changed nothing.
      expect(yield* depth(channel, queueFor("ticket.created"))).toBe(2)
      expect(yield* depth(channel)).toBe(1)
    }))

  it.scoped("an unreachable worker shows as 'worker metrics unavailable'; the other panels still answer", () =>
    Effect.gen(function*() {
      const { channel, worker } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      yield* worker.answer(503, "down for maintenance")
      const o = decode(Overview, yield* get("/ops/api/overview", admin.token))
      expect(o.worker.available).toBe(false)
      expect(o.worker.error).toMatch(/^worker metrics unavailable/)
      expect(o.worker.totals.processed).toBe(0)
      expect(o.queues.available).toBe(true)
      expect(o.outbox.available).toBe(true)
      expect(o.dlq).toMatchObject({ available: true, depth: 0, entries: [] })
    }))

  it.scoped("the DLQ listing shows each message's reason: event, eventId, routing key, attempts, kind, error and age", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const failed = messageSent()
      yield* deadLetter(channel, failed, {
        error: "Simulated failure",
        attempts: 3,
        failedAt: new Date(Date.now() - 120_000)
      })
      yield* deadLetter(channel, { event: "ticket.updated", body: "{not json" }, { error: "Body is not valid JSON" })
      yield* deadLetter(channel, ticketCreated())

      const r = yield* get("/ops/api/dlq?limit=2", admin.token)
      expect(r.status).toBe(200)
      const list = decode(DlqList, r)
      expect(list.depth).toBe(3)
      expect(list.entries).toHaveLength(2)
      const [first, poison] = list.entries
      expect(first).toMatchObject({
        event: "message.sent",
        eventId: failed.eventId,
        originalRoutingKey: "message.sent",
        originalQueue: "message.sent.queue",
        attempts: 3,
        kind: "failed",
        error: "Simulated failure",
        replayable: true
      })
      expect(first!.ageSeconds).toBeGreaterThanOrEqual(119)
      expect(poison).toMatchObject({ kind: "poison", error: "Body is not valid JSON", replayable: false })

      const filtered = decode(DlqList, yield* get("/ops/api/dlq?event=ticket.created", admin.token))
      expect(filtered.entries.map((e) => e.event)).toEqual(["ticket.created"])
      expect((yield* get("/ops/api/dlq?limit=0", admin.token)).status).toBe(400)
      expect(yield* depth(channel)).toBe(3)
    }))

  it.scoped("replaying one message moves it back to its original queue; a poison one is 409, a gone one 404", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const target = messageSent()
      const other = ticketCreated()
      yield* deadLetter(channel, other)
      yield* deadLetter(channel, target)
      yield* deadLetter(channel, { event: "message.sent", body: "nope" })
      const entries = decode(DlqList, yield* get("/ops/api/dlq", admin.token)).entries
      const id = entries.find((e) => e.eventId === target.eventId)!.id
      const poisonId = entries.find((e) => e.kind === "poison")!.id

      const r = yield* post("/ops/api/dlq/replay", { id }, admin.token)
      expect(r.status).toBe(200)
      expect(decode(ReplayResponse, r)).toMatchObject({ matched: 1, replayed: 1, skipped: 0 })
      const [copy, ...more] = yield* drain(channel, queueFor("message.sent"))
      expect(more).toHaveLength(0)
      expect(bodyOf(copy!)).toBe(JSON.stringify(target))
      expect(copy!.properties.messageId).toBe(target.eventId)

      const poison = yield* post("/ops/api/dlq/replay", { id: poisonId }, admin.token)
      expect(poison.status).toBe(409)
      expect(poison.body).toMatchObject({ _tag: "Conflict" })
      expect((poison.body as { message: string }).message).toContain("poison")

      const gone = yield* post("/ops/api/dlq/replay", { id }, admin.token)
      expect(gone.status).toBe(404)
      expect(gone.body).toMatchObject({ _tag: "NotFound" })

      const left = decode(DlqList, yield* get("/ops/api/dlq", admin.token)).entries
      expect(left.map((e) => e.kind)).toEqual(["failed", "poison"])
      expect(left[0]!.eventId).toBe(other.eventId)

      const sql = yield* SqlClient.SqlClient
      const audit = yield* sql<
        { action: string; entityId: string }
      >`SELECT action, entity_id FROM audit_log WHERE actor_id = ${admin.id} ORDER BY id`
      expect(audit).toEqual([{ action: "dlq.replay", entityId: id }, { action: "dlq.replay", entityId: poisonId }])
    }))

  it.scoped("discarding removes that message only; discarding it again is 404", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const keep = messageSent()
      const drop = messageSent()
      yield* deadLetter(channel, keep)
      yield* deadLetter(channel, drop)
      const entries = decode(DlqList, yield* get("/ops/api/dlq", admin.token)).entries
      const id = entries.find((e) => e.eventId === drop.eventId)!.id

      const r = yield* post("/ops/api/dlq/discard", { id }, admin.token)
      expect(r.status).toBe(200)
      expect(r.body).toEqual({ discarded: id })
      expect((yield* post("/ops/api/dlq/discard", { id }, admin.token)).status).toBe(404)
      expect((yield* post("/ops/api/dlq/discard", { id: "" }, admin.token)).status).toBe(400)

      const left = yield* drain(channel, DLQ)
      expect(left.map((m) => m.properties.messageId)).toEqual([keep.eventId])
      expect(yield* depth(channel, queueFor("message.sent"))).toBe(0)
    }))

  it.scoped("replay all republishes every replayable message; purge empties the DLQ", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      yield* deadLetter(channel, ticketCreated())
      yield* deadLetter(channel, messageSent())
      yield* deadLetter(channel, { event: "message.sent", body: "nope" })

      const all = decode(ReplayResponse, yield* post("/ops/api/dlq/replay", { all: true }, admin.token))
      expect(all).toMatchObject({ total: 3, replayed: 2, skipped: 1 })
      expect(all.skippedMessages[0]!.reason).toContain("poison")
      expect(yield* depth(channel, queueFor("ticket.created"))).toBe(1)
      expect(yield* depth(channel, queueFor("message.sent"))).toBe(1)
      expect(yield* depth(channel)).toBe(1)

      yield* deadLetter(channel, ticketCreated())
      const purge = yield* post("/ops/api/dlq/purge", undefined, admin.token)
      expect(purge.status).toBe(200)
      expect(purge.body).toEqual({ purged: 2 })
      expect(yield* depth(channel)).toBe(0)
      yield* reset(channel)
    }))

  it.scoped("GET /ops serves the page without a token, self-contained, with a strict CSP; the endpoints are in /openapi.json", () =>
    Effect.gen(function*() {
      const page = yield* get("/ops")
      expect(page.status).toBe(200)
      expect(page.headers["content-type"]).toContain("text/html")
      const csp = page.headers["content-security-policy"] ?? ""
      expect(csp).toContain("default-src 'none'")
      expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/)
      expect(csp).toContain("connect-src 'self'")
      expect(page.text).toContain("<title>OpsDesk &middot; Operations</title>")
      expect(page.text).toContain("/ops/api/overview")
      // Nothing is loaded from elsewhere.
      expect(page.text).not.toMatch(/\b(src|href)=["']?https?:/i)
      expect(page.text).not.toMatch(/<script\s+src|<link\s+rel="stylesheet"/i)

      const spec = (yield* get("/openapi.json")).body as { paths: Record<string, unknown> }
      expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining([
        "/ops/api/overview",
        "/ops/api/dlq",
        "/ops/api/dlq/replay",
        "/ops/api/dlq/discard",
        "/ops/api/dlq/purge",
        "/ops/api/dlq/{id}",
        "/ops/api/history",
        "/ops/api/deliveries",
        "/ops/api/deliveries/retry"
      ]))
      expect(Object.keys(spec.paths)).not.toContain("/ops")
    }))
  it.scoped("paging goes through the whole DLQ; search by event id and filters by type and kind count matches", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      // 55 dead letters: 40 failed message.sent, 12 failed ticket.created, 3 poison.
      const events = [
        ...Array.from({ length: 40 }, () => messageSent()),
        ...Array.from({ length: 12 }, () => ticketCreated())
      ]
      for (const e of events) yield* deadLetter(channel, e)
      for (let i = 0; i < 3; i++) yield* deadLetter(channel, { event: "ticket.updated", body: `{broken ${i}` })

      const first = decode(DlqList, yield* get("/ops/api/dlq", admin.token))
      expect(first).toMatchObject({ depth: 55, offset: 0, limit: 50, hasMore: true })
      expect(first.entries).toHaveLength(50)
      const second = decode(DlqList, yield* get("/ops/api/dlq?offset=50", admin.token))
      expect(second).toMatchObject({ offset: 50, hasMore: false })
      expect(second.entries).toHaveLength(5)
      expect(second.entries.map((e) => e.kind)).toEqual(["failed", "failed", "poison", "poison", "poison"])
      // Two pages, one queue: no entry twice, none missing.
      expect(new Set([...first.entries, ...second.entries].map((e) => e.id)).size).toBe(55)
      // Page by anchor: the page after the first one's last entry is the same page...
      expect(first.next).toBe(first.entries[49]!.id)
      expect(second.next).toBeNull()
      const anchored = decode(DlqList, yield* get(`/ops/api/dlq?after=${first.next}`, admin.token))
      expect(anchored).toMatchObject({ offset: 50, hasMore: false, next: null })
      expect(anchored.entries.map((e) => e.id)).toEqual(second.entries.map((e) => e.id))

      const wanted = events[47]!
      const found = decode(DlqList, yield* get(`/ops/api/dlq?eventId=${wanted.eventId}`, admin.token))
      expect(found.entries.map((e) => e.eventId)).toEqual([wanted.eventId])
      expect(found.hasMore).toBe(false)

      const created = decode(DlqList, yield* get("/ops/api/dlq?event=ticket.created&limit=10", admin.token))
      expect(created).toMatchObject({ hasMore: true })
      const createdPage2 = decode(
        DlqList,
        yield* get("/ops/api/dlq?event=ticket.created&limit=10&offset=10", admin.token)
      )
      expect(createdPage2.entries.map((e) => e.event)).toEqual(["ticket.created", "ticket.created"])
      expect(createdPage2.hasMore).toBe(false)
      // The same page by anchor: matches only, counted from the anchor on.
      const createdNext = decode(
        DlqList,
        yield* get(`/ops/api/dlq?event=ticket.created&limit=10&after=${created.next}`, admin.token)
      )
      expect(createdNext).toMatchObject({ offset: 10, hasMore: false, next: null })
      expect(createdNext.entries.map((e) => e.id)).toEqual(createdPage2.entries.map((e) => e.id))

      const poison = decode(DlqList, yield* get("/ops/api/dlq?kind=poison", admin.token))
      expect(poison.entries).toHaveLength(3)
      const both = decode(DlqList, yield* get("/ops/api/dlq?kind=poison&event=message.sent", admin.token))
      expect(both.entries).toEqual([])
      expect((yield* get("/ops/api/dlq?kind=nope", admin.token)).status).toBe(400)
      expect((yield* get("/ops/api/dlq?offset=-1", admin.token)).status).toBe(400)
      // ...and stays so when an entry before it leaves (where offset 50 now skips one).
      expect((yield* post("/ops/api/dlq/discard", { id: first.entries[3]!.id }, admin.token)).status).toBe(200)
      const after = decode(DlqList, yield* get(`/ops/api/dlq?after=${first.next}`, admin.token))
      expect(after).toMatchObject({ depth: 54, offset: 49, hasMore: false })
      expect(after.entries.map((e) => e.id)).toEqual(second.entries.map((e) => e.id))
      expect(decode(DlqList, yield* get("/ops/api/dlq?offset=50", admin.token)).entries).toHaveLength(4)
      // The anchor itself gone: a 404 that says so, not a page from somewhere else.
      expect((yield* post("/ops/api/dlq/discard", { id: first.next }, admin.token)).status).toBe(200)
      const gone = yield* get(`/ops/api/dlq?after=${first.next}`, admin.token)
      expect(gone.status).toBe(404)
      expect(gone.body).toMatchObject({ message: expect.stringContaining("has left") })
      expect(yield* depth(channel)).toBe(53)
      yield* reset(channel)
    }))

  it.scoped("the message view returns a dead letter whole: body, headers, properties; a gone one is 404", () =>
    Effect.gen(function*() {
      const { channel } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const event = messageSent()
      yield* deadLetter(channel, event, { error: "Handler exploded: boom", attempts: 4 })
      const [entry] = decode(DlqList, yield* get("/ops/api/dlq", admin.token)).entries
      const r = yield* get(`/ops/api/dlq/${entry!.id}`, admin.token)
      expect(r.status).toBe(200)
      const m = decode(DlqMessage, r)
      expect(m.entry.id).toBe(entry!.id)
      expect(JSON.parse(m.body)).toEqual(event)
      expect(m).toMatchObject({ bodyEncoding: "utf8", json: true, routingKey: DLQ })
      expect(m.headers).toMatchObject({ "opsdesk-error": "Handler exploded: boom", "opsdesk-error-kind": "failed" })
      expect(m.properties).toMatchObject({ messageId: event.eventId, contentType: "application/json" })
      expect(yield* depth(channel)).toBe(1)

      const gone = yield* get("/ops/api/dlq/0123456789abcdef", admin.token)
      expect(gone.status).toBe(404)
      expect(gone.body).toMatchObject({ _tag: "NotFound" })
      yield* reset(channel)
    }))

  it.scoped("the history samples queue depths and the worker's rates in the background, oldest first", () =>
    Effect.gen(function*() {
      const { channel, worker } = yield* TestBroker
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      yield* publish(channel, ticketCreated())
      let processed = 10
      const answer = Effect.suspend(() =>
        worker.answer(
          200,
          workerMetricsText([
            { name: "opsdesk_worker_processed_total", event: "ticket.created", value: processed += 10 },
            { name: "opsdesk_worker_lag_seconds_sum", event: "ticket.created", value: processed * 0.05 },
            { name: "opsdesk_worker_lag_seconds_count", event: "ticket.created", value: processed }
          ])
        )
      )
      yield* answer
      const history = () => Effect.map(get("/ops/api/history", admin.token), (r) => decode(History, r))
      const h0 = yield* history()
      expect(h0).toMatchObject({ intervalSeconds: 0.2, windowSeconds: 3600 })
      // Samples arrive every 200 ms; the counter grows between them.
      yield* waitUntil(
        "three samples with a rate",
        Effect.flatMap(
          Effect.zipRight(answer, history()),
          (h) => Effect.succeed(h.points.filter((p) => p.processedPerSecond !== null).length >= 2)
        )
      )
      const h = yield* history()
      const times = h.points.map((p) => Date.parse(p.at))
      expect(times).toEqual([...times].sort((a, b) => a - b))
      const rated = h.points.filter((p) => p.processedPerSecond !== null)
      expect(rated.every((p) => p.processedPerSecond! >= 0)).toBe(true)
      expect(rated.some((p) => p.processedPerSecond! > 0)).toBe(true)
      expect(h.points.some((p) => p.avgLagMs !== null && Math.abs(p.avgLagMs - 50) < 1e-6)).toBe(true)
      const last = h.points[h.points.length - 1]!
      expect(last.queues).toMatchObject({ "ticket.created.queue": 1, [DLQ]: 0 })
      yield* reset(channel)
    }))

  it.scoped("deliveries are listed newest first by number, and page so, across a power of ten", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const sql = yield* SqlClient.SqlClient
      // Ids of the test's own (the sequence never comes near them): as text, "1000000000000" sorts before "999999999998".
      const ids = [0n, 1n, 2n, 3n].map((i) => (10n ** 12n - 2n + i).toString())
      const tag = crypto.randomUUID()
      yield* sql`DELETE FROM deliveries WHERE id = ANY(${ids}::bigint[])`
      yield* Effect.addFinalizer(() => sql`DELETE FROM deliveries WHERE id = ANY(${ids}::bigint[])`.pipe(Effect.orDie))
      yield* sql`INSERT INTO deliveries (id, idempotency_key, channel, event_id, event_type, payload, state, attempts,
          last_error)
        SELECT id, ${tag} || '-' || id, 'email', ${tag} || '-' || id, 'ticket.created', '{}'::json, 'failed', 5,
          'connect ECONNREFUSED'
        FROM unnest(${ids}::bigint[]) AS t(id)`

      const first = decode(DeliveryList, yield* get("/ops/api/deliveries?channel=email&limit=2", admin.token))
      expect(first.items.map((d) => d.id)).toEqual([ids[3], ids[2]])
      expect(first.next).toBe(ids[2])
      const second = decode(
        DeliveryList,
        yield* get(`/ops/api/deliveries?channel=email&limit=2&before=${first.next}`, admin.token)
      )
      expect(second.items.map((d) => d.id)).toEqual([ids[1], ids[0]])
    }))

  it.scoped("deliveries: the panel counts pending and failed per channel; failed ones are listed and retried", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const sql = yield* SqlClient.SqlClient
      const before = decode(Overview, yield* get("/ops/api/overview", admin.token)).deliveries
      const [failedEmail, failedHook, , pending] = yield* insertDeliveries([
        { channel: "email", state: "failed" },
        { channel: "webhook", state: "failed" },
        { channel: "webhook", state: "failed" },
        { channel: "email", state: "pending" }
      ])
      const o = decode(Overview, yield* get("/ops/api/overview", admin.token))
      expect(o.deliveries.available).toBe(true)
      const byChannel = Object.fromEntries(o.deliveries.channels.map((c) => [c.channel, c]))
      const was = Object.fromEntries(before.channels.map((c) => [c.channel, c]))
      expect(byChannel["email"]!.failed - was["email"]!.failed).toBe(1)
      expect(byChannel["webhook"]!.failed - was["webhook"]!.failed).toBe(2)
      expect(byChannel["email"]!.pending - was["email"]!.pending).toBe(1)
      expect(o.deliveries.oldestPendingSeconds).toBeGreaterThanOrEqual(89)
      expect(o.deliveries.latestFailed.map((d) => d.id)).toEqual(expect.arrayContaining([failedEmail, failedHook]))
      expect(o.broker.connections.length).toBeGreaterThanOrEqual(1)

      const list = decode(DeliveryList, yield* get("/ops/api/deliveries?channel=webhook&limit=1", admin.token))
      expect(list.items).toHaveLength(1)
      expect(list.items[0]).toMatchObject({ channel: "webhook", state: "failed", lastError: "connect ECONNREFUSED" })
      expect(list.next).toBe(list.items[0]!.id)

      // Leading zeros name the same delivery, and the answer spells it as the listing does.
      const one = yield* post("/ops/api/deliveries/retry", { id: `00${failedEmail}` }, admin.token)
      expect(one.status).toBe(200)
      expect(one.body).toEqual({ retried: [failedEmail] })
      const again = yield* post("/ops/api/deliveries/retry", { id: failedEmail }, admin.token)
      expect(again.status).toBe(404)
      expect(again.body).toMatchObject({ _tag: "NotFound" })
      expect((yield* post("/ops/api/deliveries/retry", { id: pending }, admin.token)).status).toBe(404)
      expect((yield* post("/ops/api/deliveries/retry", { id: "x" }, admin.token)).status).toBe(400)
      // Every bigint is an id that may exist (a 404 here), one past the largest is not (a 400, not a 500).
      expect((yield* post("/ops/api/deliveries/retry", { id: "9223372036854775807" }, admin.token)).status).toBe(404)
      const tooBig = yield* post("/ops/api/deliveries/retry", { id: "9223372036854775808" }, admin.token)
      expect(tooBig.status).toBe(400)
      expect(tooBig.body).toMatchObject({ _tag: "HttpApiDecodeError" })
      const beyond = yield* get("/ops/api/deliveries?before=9223372036854775808", admin.token)
      expect(beyond.status).toBe(400)

      const all = yield* post("/ops/api/deliveries/retry", { all: true, channel: "webhook" }, admin.token)
      expect((all.body as { retried: Array<string> }).retried).toEqual(expect.arrayContaining([failedHook]))
      const states = yield* sql<{ id: string; state: string }>`
        SELECT id::text AS id, state FROM deliveries WHERE id = ANY(${[failedEmail!, failedHook!]}::bigint[])`
      expect(states.map((r) => r.state)).toEqual(["pending", "pending"])
      const audit = yield* sql<{ action: string; entityId: string }>`
        SELECT action, entity_id FROM audit_log WHERE actor_id = ${admin.id} ORDER BY id`
      expect(audit).toEqual([
        { action: "deliveries.retry", entityId: failedEmail },
        { action: "deliveries.retry", entityId: "all" }
      ])
    }))
})
