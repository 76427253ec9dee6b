/**
 * The ticket-list cache in Redis, on the production server (NodeServerLive on
 * a port): a listing is stored per caller scope and query, and a hit is
 * answered with the stored bytes (not re-read from the database), with the
 * same headers as the miss that stored it, and counted in the request metrics
 * like any request. Requests that cannot be answered from the cache (bad
 * queries, bad tokens) get their errors. The API never invalidates; the
 * worker does (simulated here).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { httpRequests } from "../../src/App/RequestMetrics.js"
import { Redis } from "../../src/Store/Redis.js"
import { TicketPage } from "../../src/Tickets/Domain.js"
import { GENERATION_KEY, KEY_PREFIX, TicketListCache, TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { listQueryKey } from "../../src/Tickets/Tickets.js"
import { call, decode, get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiProductionServerLayer } from "./support/Layers.js"

const generation = Effect.flatMap(Redis, (redis) => redis.use((c) => c.get(GENERATION_KEY))).pipe(Effect.orDie)

/**
 * Runs `body` until no invalidation (another process's worker, say) bumped
 * the cache generation while it ran.
 */
const withStableGeneration = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    for (let attempt = 1;; attempt++) {
      const before = yield* generation
      const result = yield* body
      if ((yield* generation) === before || attempt === 5) return result
    }
  })

const counted = (status: number) =>
  Metric.value(
    httpRequests.pipe(
      Metric.tagged("method", "GET"),
      Metric.tagged("route", "/v1/tickets"),
      Metric.tagged("status", String(status))
    )
  )
    .pipe(Effect.map((s) => s.count))

layer(apiProductionServerLayer(TicketListCacheLive()), { excludeTestServices: true, timeout: "60 seconds" })(
  "ticket list cache",
  (it) => {
    it.scoped("a second identical listing is answered from Redis, byte for byte, under the caller's scope", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const sql = yield* SqlClient.SqlClient
        const redis = yield* Redis
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token)

        yield* withStableGeneration(Effect.gen(function*() {
          const first = yield* get("/v1/tickets?limit=10", customer.token)
          expect(first.status).toBe(200)
          const g = yield* generation
          const key = `${KEY_PREFIX}${g ?? "0"}:customer:${customer.id}:${listQueryKey({ limit: 10 })}`
          expect(yield* redis.use((c) => c.get(key)).pipe(Effect.orDie)).toBe(first.text)

          // A row the API did not write (so nothing invalidated): the cached page does not show it...
          yield* sql`INSERT INTO tickets (title, description, owner_id) VALUES ('behind the cache', 'd', ${customer.id})`
          const second = yield* get("/v1/tickets?limit=10", customer.token)
          expect(second.status).toBe(200)
          expect(second.headers["content-type"]).toContain("application/json")
          expect(second.text).toBe(first.text)
          // ...while another query is a miss and does.
          const other = decode(TicketPage, yield* get("/v1/tickets?limit=11", customer.token))
          expect(other.items.map((t) => t.title)).toEqual(["behind the cache", "first"])
        }))
      }))

    it.scoped("scopes never mix: another customer's identical query is answered from their own data", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const alice = yield* fx.user("customer")
        const bob = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "alice's", description: "d" }, alice.token)
        yield* post("/v1/tickets", { title: "bob's", description: "d" }, bob.token)
        const a = decode(TicketPage, yield* get("/v1/tickets", alice.token))
        const b = decode(TicketPage, yield* get("/v1/tickets", bob.token))
        expect(a.items.map((t) => t.title)).toEqual(["alice's"])
        expect(b.items.map((t) => t.title)).toEqual(["bob's"])
        expect(decode(TicketPage, yield* get("/v1/tickets", alice.token)).items.map((t) => t.title)).toEqual([
          "alice's"
        ])
      }))

    it.scoped("after the worker's invalidation the next listing comes from the database again", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        const cache = yield* TicketListCache
        yield* post("/v1/tickets", { title: "one", description: "d" }, customer.token)
        expect(decode(TicketPage, yield* get("/v1/tickets", customer.token)).items).toHaveLength(1)
        yield* post("/v1/tickets", { title: "two", description: "d" }, customer.token)
        yield* cache.invalidateAll.pipe(Effect.orDie)
        expect(decode(TicketPage, yield* get("/v1/tickets", customer.token)).items.map((t) => t.title)).toEqual([
          "two",
          "one"
        ])
      }))

    it.scoped("an invalid cursor is rejected before the cache is consulted", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        const r = yield* get("/v1/tickets?cursor=bogus", customer.token)
        expect(r.status).toBe(400)
      }))

    it.scoped("a cached listing has the bytes and headers of the first answer; every request is counted", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "cached", description: "d" }, customer.token)
        const before = yield* counted(200)
        const first = yield* get("/v1/tickets?limit=7", customer.token) // a miss: stores the page
        const hits = yield* Effect.all([
          get("/v1/tickets?limit=7", customer.token),
          get("/v1/tickets?limit=7", customer.token)
        ])
        for (const hit of hits) {
          expect(hit.status).toBe(200)
          expect(hit.text).toBe(first.text)
          expect(hit.headers["content-type"]).toBe(first.headers["content-type"])
          expect(hit.headers["content-length"]).toBe(first.headers["content-length"])
          expect(hit.headers["content-type"]).toBe("application/json")
        }
        expect(JSON.parse(first.text).items.map((t: { title: string }) => t.title)).toContain("cached")
        expect((yield* counted(200)) - before).toBe(3)
      }))

    it.scoped("listings with a bad query or token get their errors, counted; a body, a repeated parameter or a cursor as ever", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        yield* get("/v1/tickets?limit=5", customer.token) // a cached page for this token and query
        const bad400 = yield* counted(400)
        expect((yield* get("/v1/tickets?limit=abc", customer.token)).status).toBe(400)
        expect((yield* get("/v1/tickets?limit=0", customer.token)).status).toBe(400)
        expect((yield* counted(400)) - bad400).toBe(2)
        expect((yield* get("/v1/tickets?limit=5", `${customer.token}x`)).status).toBe(401)
        expect((yield* get("/v1/tickets?limit=5")).status).toBe(401)
        // A GET with a body, a repeated parameter, a cursor: answered as ever.
        const withBody = yield* call("GET", "/v1/tickets?limit=5", { token: customer.token, raw: "{}" })
        expect(withBody.status).toBe(200)
        expect((yield* get("/v1/tickets?limit=5&limit=6", customer.token)).status).toBe(400)
        expect((yield* get("/v1/tickets?limit=5&cursor=nonsense", customer.token)).status).toBe(400)
      }))
  }
)
