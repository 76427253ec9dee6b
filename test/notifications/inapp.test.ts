/**
 * In-app notifications over HTTP: the listing (keyset pages, the unread
 * filter), marking read, the unread count, ownership; the live stream (SSE):
 * a row committed as the worker commits it reaches a connected client,
 * Last-Event-ID replays what was missed, a heartbeat, the per-user limit, 401,
 * and the end of a stream whose access was revoked. Rows are inserted with
 * one INSERT per "commit", as the worker's claim statement does (the NOTIFY
 * comes from the table's trigger, migration 0011).
 */
import { HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schedule, Scope } from "effect"
import { Notification, NotificationPage, UnreadCount } from "../../src/Notifications/InApp.js"
import { decode, get, patch, post } from "../api/support/Client.js"
import { makeFixtures } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { configFrom, waitUntil } from "../support/Env.js"
import { notificationOf, type OpenStream, openStream } from "./support/SseClient.js"

const MAX_STREAMS = 2

/** Inserts in-app rows for `recipient` in one statement (one "commit"); their ids, in order. */
const commit = (recipient: string, bodies: ReadonlyArray<string>, channel: "in_app" | "email" = "in_app") =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ id: string }>`INSERT INTO notifications (event_id, event_type, recipient_id, channel, body)
      SELECT gen_random_uuid()::text, 'message.sent', ${recipient}, ${channel}, b
      FROM unnest(${bodies}::text[]) WITH ORDINALITY AS t(b, n) ORDER BY n
      RETURNING id::text AS id`
  ).pipe(Effect.map((rows) => rows.map((r) => r.id)), Effect.orDie)

/**
 * In-app rows with ids of the test's choosing, `first` on, in one statement.
 * The sequence never comes near them; rows a crashed run left on them go first.
 */
const commitAt = (recipient: string, first: bigint, bodies: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    const ids = bodies.map((_, i) => (first + BigInt(i)).toString())
    return sql`DELETE FROM notifications WHERE id = ANY(${ids}::bigint[])`.pipe(
      Effect.zipRight(sql`INSERT INTO notifications (id, event_id, event_type, recipient_id, channel, body)
        SELECT id, gen_random_uuid()::text, 'message.sent', ${recipient}, 'in_app', b
        FROM unnest(${ids}::bigint[], ${bodies}::text[]) AS t(id, b)`),
      Effect.as(ids)
    )
  }).pipe(Effect.orDie)

/** Two ids below a power of ten and two from it: as text, "1000000000000" sorts before "999999999998". */
const ACROSS_A_POWER_OF_TEN = 10n ** 12n - 2n

/** Removes the notifications of the test's users when the test ends. */
const cleanupNotifications = (users: () => ReadonlyArray<string>) =>
  Effect.addFinalizer(() =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => {
      const ids = users()
      return ids.length === 0
        ? Effect.void
        : sql`DELETE FROM notifications WHERE recipient_id IN ${sql.in(ids)}`.pipe(Effect.asVoid)
    }).pipe(Effect.orDie)
  )

const fixtures = Effect.gen(function*() {
  const fx = yield* makeFixtures
  const users: Array<string> = []
  yield* cleanupNotifications(() => users)
  const user = (role: "customer" | "agent" = "customer") =>
    Effect.tap(fx.user(role), (u) => Effect.sync(() => users.push(u.id)))
  return { user }
})

/** This file's API names its database connections so (its LISTEN connection is `${APP}-listen`). */
const APP = `opsdesk-inapp-test-${process.pid}`

const TestLayerOf = () =>
  apiTestLayer().pipe(
    Layer.provide(Layer.setConfigProvider(configFrom({
      OTEL_SERVICE_NAME: APP,
      NOTIFICATIONS_STREAM_HEARTBEAT_MS: 300,
      NOTIFICATIONS_STREAM_MAX_PER_USER: MAX_STREAMS
    })))
  )

layer(TestLayerOf(), { excludeTestServices: true, timeout: "120 seconds" })("in-app notifications", (it) => {
  it.scoped("list newest first in keyset pages; unread filter; only the caller's in-app rows", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const bob = yield* fx.user()
      const ids: Array<string> = []
      for (let i = 0; i < 5; i++) ids.push((yield* commit(alice.id, [`note ${i}`]))[0]!)
      yield* commit(alice.id, ["an email row"], "email")
      yield* commit(bob.id, ["bob's"])

      const seen: Array<string> = []
      let cursor: string | null = null
      let pages = 0
      do {
        const path: string = `/v1/notifications?limit=2${cursor === null ? "" : `&cursor=${cursor}`}`
        const page = decode(NotificationPage, yield* get(path, alice.token))
        for (const n of page.items) seen.push(n.id)
        cursor = page.nextCursor
        pages++
      } while (cursor !== null && pages < 10)
      expect(pages).toBe(3)
      expect(seen).toEqual([...ids].reverse())

      const first = decode(NotificationPage, yield* get("/v1/notifications", alice.token)).items[0]!
      expect(first).toMatchObject({ id: ids[4], eventType: "message.sent", body: "note 4", readAt: null })
      expect(decode(UnreadCount, yield* get("/v1/notifications/unread-count", alice.token))).toEqual({ unread: 5 })

      const read = decode(Notification, yield* post(`/v1/notifications/${ids[1]}/read`, undefined, alice.token))
      expect(read.id).toBe(ids[1])
      expect(read.readAt).not.toBeNull()
      // Again: 200, and the first reading stays.
      const again = decode(Notification, yield* post(`/v1/notifications/${ids[1]}/read`, undefined, alice.token))
      expect(again.readAt).toBe(read.readAt)

      const unread = decode(NotificationPage, yield* get("/v1/notifications?unread=true", alice.token))
      expect(unread.items.map((n) => n.id)).toEqual([ids[4], ids[3], ids[2], ids[0]])
      expect(decode(UnreadCount, yield* get("/v1/notifications/unread-count", alice.token))).toEqual({ unread: 4 })

      const bobs = decode(NotificationPage, yield* get("/v1/notifications", bob.token))
      expect(bobs.items.map((n) => n.body)).toEqual(["bob's"])

      const bad = yield* get("/v1/notifications?cursor=abc", alice.token)
      expect(bad.status).toBe(400)
      expect(bad.body).toMatchObject({ _tag: "ValidationError", field: "cursor" })
      expect((yield* get("/v1/notifications?limit=0", alice.token)).status).toBe(400)
    }))

  it.scoped("ids across a power of ten keep their numeric order: in the listing's pages and in a replay", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const ids = yield* commitAt(alice.id, ACROSS_A_POWER_OF_TEN, ["w", "x", "y", "z"])

      const first = decode(NotificationPage, yield* get("/v1/notifications?limit=3", alice.token))
      expect(first.items.map((n) => n.id)).toEqual([ids[3], ids[2], ids[1]])
      const second = decode(
        NotificationPage,
        yield* get(`/v1/notifications?limit=3&cursor=${first.nextCursor}`, alice.token)
      )
      expect(second.items.map((n) => n.id)).toEqual([ids[0]])
      expect(second.nextCursor).toBeNull()

      // A replay from just before them: all four, oldest first, each under its own id.
      const stream = yield* openStream(alice, (ACROSS_A_POWER_OF_TEN - 1n).toString())
      const replayed = [yield* stream.next, yield* stream.next, yield* stream.next, yield* stream.next]
      expect(replayed.map((e) => e.id)).toEqual(ids)
      expect(replayed.map((e) => notificationOf(e).body)).toEqual(["w", "x", "y", "z"])
      yield* stream.close
    }))

  it.scoped("another user's notification, or an unknown one, is 404; a malformed id is 400; read-all marks the rest", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const bob = yield* fx.user("agent")
      const [mine, other] = yield* commit(alice.id, ["one", "two"])
      const foreign = yield* post(`/v1/notifications/${mine}/read`, undefined, bob.token)
      expect(foreign.status).toBe(404)
      expect(foreign.body).toMatchObject({ _tag: "NotFound", message: `notification ${mine} not found` })
      expect((yield* post("/v1/notifications/9223372036854775807/read", undefined, alice.token)).status).toBe(404)
      expect((yield* post("/v1/notifications/abc/read", undefined, alice.token)).status).toBe(400)
      expect((yield* post("/v1/notifications/99999999999999999999/read", undefined, alice.token)).status).toBe(400)
      // Bob's attempt changed nothing.
      expect(decode(UnreadCount, yield* get("/v1/notifications/unread-count", alice.token))).toEqual({ unread: 2 })

      expect((yield* post("/v1/notifications/read-all", undefined, bob.token)).body).toEqual({ marked: 0 })
      expect((yield* post("/v1/notifications/read-all", undefined, alice.token)).body).toEqual({ marked: 2 })
      expect((yield* post("/v1/notifications/read-all", undefined, alice.token)).body).toEqual({ marked: 0 })
      const page = decode(NotificationPage, yield* get("/v1/notifications", alice.token))
      expect(page.items.map((n) => n.id)).toEqual([other, mine])
      expect(page.items.every((n) => n.readAt !== null)).toBe(true)
      expect((yield* get("/v1/notifications?unread=true", alice.token)).body).toEqual({ items: [], nextCursor: null })
    }))

  it.scoped("every notifications route answers 401 without a valid token", () =>
    Effect.gen(function*() {
      for (const path of ["/v1/notifications", "/v1/notifications/unread-count", "/v1/notifications/stream"]) {
        const reply = yield* get(path)
        expect(reply.status, path).toBe(401)
        expect(reply.body, path).toMatchObject({ _tag: "Unauthorized" })
        expect((yield* get(path, "not-a-token")).status, path).toBe(401)
      }
      expect((yield* post("/v1/notifications/read-all", undefined)).status).toBe(401)
      expect((yield* post("/v1/notifications/1/read", undefined)).status).toBe(401)
    }))

  it.scoped("the stream delivers a notification committed after it opened, and heartbeats while idle", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const bob = yield* fx.user()
      const [before] = yield* commit(alice.id, ["before the stream"])
      const stream = yield* openStream(alice)
      expect(stream.status).toBe(200)
      yield* waitUntil("the stream's opening", Effect.sync(() => stream.raw().includes(": connected")))
      // Someone else's, and an email row: not on Alice's stream.
      yield* commit(bob.id, ["bob's"])
      yield* commit(alice.id, ["by email"], "email")
      const [id] = yield* commit(alice.id, ["live one"])
      const event = yield* stream.next
      expect(event.event).toBe("notification")
      expect(event.id).toBe(id)
      expect(notificationOf(event)).toMatchObject({ id, body: "live one", readAt: null })
      expect(BigInt(id!)).toBeGreaterThan(BigInt(before!))
      yield* waitUntil("a heartbeat", Effect.sync(() => stream.raw().includes(": heartbeat\n\n")))
      // One statement with several rows: each is its own event, in id order.
      const batch = yield* commit(alice.id, ["b1", "b2", "b3"])
      const received = [yield* stream.next, yield* stream.next, yield* stream.next]
      expect(received.map((e) => notificationOf(e).id)).toEqual(batch)
      expect(received.map((e) => e.id)).toEqual(batch)
    }))

  it.scoped("one commit of more rows than a page holds reaches the stream whole, in order", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const stream = yield* openStream(alice)
      yield* waitUntil("the stream's opening", Effect.sync(() => stream.raw().includes(": connected")))
      // One statement, so one NOTIFY naming one range of 450 ids: more than two pages of 200.
      const bodies = Array.from({ length: 450 }, (_, i) => `n${i}`)
      const ids = yield* commit(alice.id, bodies)
      const received: Array<string> = []
      for (let i = 0; i < bodies.length; i++) received.push(notificationOf(yield* stream.next).body)
      expect(received).toEqual(bodies)
      const [after] = yield* commit(alice.id, ["after"])
      expect((yield* stream.next).id).toBe(after)
      expect(BigInt(after!)).toBeGreaterThan(BigInt(ids[ids.length - 1]!))
    }))

  it.scoped("Last-Event-ID replays what was committed while disconnected, then goes live", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const first = yield* openStream(alice)
      yield* waitUntil("the stream's opening", Effect.sync(() => first.raw().includes(": connected")))
      const [a] = yield* commit(alice.id, ["a"])
      const seen = yield* first.next
      expect(seen.id).toBe(a)
      yield* first.close
      const missed = [...(yield* commit(alice.id, ["b"])), ...(yield* commit(alice.id, ["c", "d"]))]

      const second = yield* openStream(alice, seen.id)
      const replayed = [yield* second.next, yield* second.next, yield* second.next]
      expect(replayed.map((e) => notificationOf(e).body)).toEqual(["b", "c", "d"])
      expect(replayed.map((e) => e.id)).toEqual(missed)
      const [live] = yield* commit(alice.id, ["e"])
      const next = yield* second.next
      expect(notificationOf(next)).toMatchObject({ id: live, body: "e" })
      yield* second.close

      // From the start ("0"): everything, oldest first; a malformed id is a 400.
      const all = yield* openStream(alice, "0")
      const everything: Array<string> = []
      for (let i = 0; i < 5; i++) everything.push(notificationOf(yield* all.next).body)
      expect(everything).toEqual(["a", "b", "c", "d", "e"])
      const bad = yield* openStream(alice, "yesterday")
      expect(bad.status).toBe(400)
      expect(JSON.parse(bad.text)).toMatchObject({ _tag: "ValidationError", field: "Last-Event-ID" })
    }))

  it.scoped("a user has at most NOTIFICATIONS_STREAM_MAX_PER_USER streams; a closed one frees its place", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const bob = yield* fx.user()
      const streams: Array<OpenStream> = []
      for (let i = 0; i < MAX_STREAMS; i++) streams.push(yield* openStream(alice))
      expect(streams.map((s) => s.status)).toEqual(Array(MAX_STREAMS).fill(200))
      const refused = yield* openStream(alice)
      expect(refused.status).toBe(429)
      expect(JSON.parse(refused.text)).toMatchObject({ _tag: "TooManyStreams" })
      // Another user is not affected.
      expect((yield* openStream(bob)).status).toBe(200)
      // Every open stream gets the notification.
      const [id] = yield* commit(alice.id, ["to both"])
      for (const s of streams) expect((yield* s.next).id).toBe(id)

      // Released when the server sees the disconnect: until then a new one may still be refused.
      yield* streams[0]!.close
      const reopened = yield* openStream(alice).pipe(
        Effect.filterOrFail((s) => s.status === 200, () => new Error("the closed stream was not released")),
        Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds")))
      )
      expect(reopened.status).toBe(200)
    }))

  it.scoped("a lost LISTEN connection is replaced, and what was committed meanwhile still arrives", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const stream = yield* openStream(alice)
      yield* waitUntil("the stream's opening", Effect.sync(() => stream.raw().includes(": connected")))
      const sql = yield* SqlClient.SqlClient
      const listeners = sql<{ pid: number }>`SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = ${`${APP}-listen`}`
      yield* waitUntil("the API's LISTEN connection", Effect.map(Effect.orDie(listeners), (rows) => rows.length === 1))
        .pipe(
          // Say what the database had instead, should it never come.
          Effect.tapError(() =>
            sql`SELECT pid, application_name, state, backend_start, query FROM pg_stat_activity
              WHERE datname = current_database()`.pipe(
              Effect.flatMap((rows) => Effect.logError("connections of the test database", rows)),
              Effect.ignore
            )
          )
        )
      // A row whose id is taken now but whose transaction commits only during the outage, after a
      // higher id has gone out: a catch-up from the cursor alone would never see it.
      const taken = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const late = yield* sql.withTransaction(
        commit(alice.id, ["taken early, committed late"]).pipe(
          Effect.zipLeft(Deferred.succeed(taken, undefined)),
          Effect.zipLeft(Deferred.await(release))
        )
      ).pipe(Effect.orDie, Effect.fork)
      yield* Deferred.await(taken)
      const [early] = yield* commit(alice.id, ["higher id, sent first"])
      expect((yield* stream.next).id).toBe(early)
      // Cut, as the database sees it (a database restart or a network cut look the same to the API).
      const [listener] = yield* Effect.orDie(listeners)
      // Waits until the backend is gone (up to 5 s), so the late commit's NOTIFY cannot reach it.
      yield* sql`SELECT pg_terminate_backend(${listener!.pid}, 5000)`.pipe(Effect.orDie)
      yield* Deferred.succeed(release, undefined)
      const [lateId] = yield* Fiber.join(late)
      expect(BigInt(lateId!)).toBeLessThan(BigInt(early!))
      const [during] = yield* commit(alice.id, ["while the listener was down"])
      const caughtUp = [yield* stream.next, yield* stream.next].map(notificationOf)
      expect(caughtUp.map((n) => n.id).sort()).toEqual([lateId, during].sort())
      // Nothing twice: the early row is not sent again by the catch-up.
      yield* commit(alice.id, ["marker"])
      expect(notificationOf(yield* stream.next).body).toBe("marker")
      yield* waitUntil(
        "a new LISTEN connection",
        Effect.map(Effect.orDie(listeners), (rows) => rows.some((r) => r.pid !== listener!.pid))
      )
      const [after] = yield* commit(alice.id, ["after"])
      expect((yield* stream.next).id).toBe(after)
    }))

  it.scoped("a stream whose access is revoked ends with an `end` event at the next heartbeat", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const stream = yield* openStream(alice)
      yield* waitUntil("the stream's opening", Effect.sync(() => stream.raw().includes(": connected")))
      expect((yield* post("/v1/auth/logout", undefined, alice.token)).status).toBe(204)
      const end = yield* stream.next
      expect(end.event).toBe("end")
      expect(JSON.parse(end.data)).toEqual({ reason: "revoked" })
      yield* stream.ended.pipe(Effect.timeout("20 seconds"))
      expect((yield* openStream(alice)).status).toBe(401)
    }))

  it.scoped("shutting the API down ends open streams at once, each with `end: shutdown`", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      // A second API of its own, so closing it leaves the suite's running; a client of its own, that outlives it.
      const scope = yield* Scope.make()
      const api = yield* Layer.buildWithScope(TestLayerOf(), scope)
      const address = Context.get(api, HttpServer.HttpServer).address
      const port = address._tag === "TcpAddress" ? address.port : 0
      const client = HttpClient.mapRequest(
        Context.get(yield* Layer.build(NodeHttpClient.layer), HttpClient.HttpClient),
        HttpClientRequest.prependUrl(`http://127.0.0.1:${port}`)
      )
      const open = Effect.provideService(openStream(alice), HttpClient.HttpClient, client)
      const streams = [yield* open, yield* open]
      for (const s of streams) yield* waitUntil("the opening", Effect.sync(() => s.raw().includes(": connected")))
      const stopping = yield* Effect.fork(Scope.close(scope, Exit.void))
      for (const s of streams) {
        const end = yield* s.next
        expect(end.event).toBe("end")
        expect(JSON.parse(end.data)).toEqual({ reason: "shutdown" })
        yield* s.ended.pipe(Effect.timeout("20 seconds"))
      }
      yield* Fiber.join(stopping).pipe(Effect.timeout("20 seconds"))
    }))

  it.scoped("/openapi.json documents the stream as text/event-stream with Last-Event-ID", () =>
    Effect.gen(function*() {
      const doc = (yield* get("/openapi.json")).body as {
        paths: Record<
          string,
          Record<
            string,
            {
              parameters?: Array<{ name: string; in: string }>
              responses: Record<string, { content?: Record<string, unknown> }>
            }
          >
        >
      }
      const stream = doc.paths["/v1/notifications/stream"]!.get!
      expect(Object.keys(stream.responses["200"]!.content!)).toEqual(["text/event-stream"])
      expect(stream.responses["429"]).toBeDefined()
      expect(stream.responses["401"]).toBeDefined()
      expect(stream.parameters).toContainEqual(expect.objectContaining({ name: "last-event-id", in: "header" }))
      for (const path of ["/v1/notifications", "/v1/notifications/unread-count", "/v1/notifications/{id}/read"]) {
        expect(doc.paths[path], path).toBeDefined()
      }
      expect(doc.paths["/v1/users/me/preferences"]!.patch).toBeDefined()
    }))

  it.scoped("preferences: all on by default; a PATCH changes what it names; validated", () =>
    Effect.gen(function*() {
      const fx = yield* fixtures
      const alice = yield* fx.user()
      const initial = yield* get("/v1/users/me/preferences", alice.token)
      expect(initial.body).toEqual({ email: true, inApp: true, updatedAt: null })
      const off = yield* patch("/v1/users/me/preferences", { inApp: false }, alice.token)
      expect(off.status).toBe(200)
      expect(off.body).toMatchObject({ email: true, inApp: false })
      const emailOff = yield* patch("/v1/users/me/preferences", { email: false }, alice.token)
      expect(emailOff.body).toMatchObject({ email: false, inApp: false })
      expect((yield* get("/v1/users/me/preferences", alice.token)).body).toMatchObject({ email: false, inApp: false })
      const stored = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ email: boolean; inApp: boolean }>`SELECT email, in_app FROM user_preferences WHERE user_id = ${alice.id}`)
        .pipe(Effect.orDie)
      expect(stored).toEqual([{ email: false, inApp: false }])
      for (const body of [{}, { email: "yes" }, { inApp: null }]) {
        expect((yield* patch("/v1/users/me/preferences", body, alice.token)).status, JSON.stringify(body)).toBe(400)
      }
      expect((yield* get("/v1/users/me/preferences")).status).toBe(401)
      // Someone else's are their own.
      const bob = yield* fx.user()
      expect((yield* get("/v1/users/me/preferences", bob.token)).body).toMatchObject({ email: true, inApp: true })
    }))
})
