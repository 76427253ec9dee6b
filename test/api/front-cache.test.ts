/**
 * The HTTP front cache (src/App/FrontCache.ts) on the production server, with
 * the route's own listing cache out of the way (every listing the app builds
 * comes from the database): what it answers, to whom, and until when.
 * - A token the middleware let in gets the stored answer of its own earlier
 *   request (a row written behind the API's back does not show), with the
 *   request id it asks for, counted in the request metrics.
 * - Nobody else's token reads it; a token the middleware has not let in, or
 *   one logged out through this process, goes the whole way (401).
 * - The counter moving on (the worker's invalidation) ends every answer, and
 *   deletes them.
 * - One query is one entry however it is spelt; a query the endpoint does
 *   not declare is the app's and is not stored.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { createHash } from "node:crypto"
import { frontCachedPaths } from "../../src/App/FrontCache.js"
import { httpRequests } from "../../src/App/RequestMetrics.js"
import { Redis } from "../../src/Store/Redis.js"
import { TicketPage } from "../../src/Tickets/Domain.js"
import { GENERATION_KEY, makeRedis } from "../../src/Tickets/ListCache.js"
import { call, decode, get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiProductionServerLayer, PassThroughCache } from "./support/Layers.js"

const titles = (reply: Parameters<typeof decode>[1]) => decode(TicketPage, reply).items.map((t) => t.title)

/** What the front cache's keys hold of a token. */
const digestOf = (token: string) => createHash("sha256").update(token).digest("base64url")

const frontKeys = (digest: string) =>
  Effect.flatMap(Redis, (redis) => redis.use((c) => c.keys(`front:*${digest}*`))).pipe(Effect.orDie)

const bumpGeneration = Effect.flatMap(Redis, (redis) => redis.use((c) => c.incr(GENERATION_KEY))).pipe(Effect.orDie)

const countedHits = Metric.value(
  httpRequests.pipe(
    Metric.tagged("method", "GET"),
    Metric.tagged("route", "/v1/tickets"),
    Metric.tagged("status", "200")
  )
).pipe(Effect.map((s) => s.count))

layer(apiProductionServerLayer(PassThroughCache), { excludeTestServices: true, timeout: "60 seconds" })(
  "HTTP front cache",
  (it) => {
    it("marks the ticket listing, and nothing that is not a fixed authenticated GET", () => {
      expect([...frontCachedPaths].map(([path, route]) => [path, route.counter, [...route.params].sort()])).toEqual([
        ["/v1/tickets", GENERATION_KEY, ["assigneeId", "cursor", "limit", "priority", "status"]]
      ])
    })

    it.scoped("answers a let-in token from its own stored answer, with its request id, counted", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const sql = yield* SqlClient.SqlClient
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token) // lets the token in
        const stored = yield* get("/v1/tickets?limit=3", customer.token) // a miss: the app answers, and it is stored
        expect(titles(stored)).toEqual(["first"])
        // Written behind the API's back (nothing bumps the counter): only the app would show it.
        yield* sql`INSERT INTO tickets (title, description, owner_id) VALUES ('behind', 'd', ${customer.id})`
        const before = yield* countedHits
        const hit = yield* call("GET", "/v1/tickets?limit=3", {
          token: customer.token,
          headers: { "x-request-id": "front-cache-test-1" }
        })
        expect(hit.status).toBe(200)
        expect(hit.text).toBe(stored.text)
        expect(hit.headers["x-request-id"]).toBe("front-cache-test-1")
        expect(hit.headers["content-type"]).toBe(stored.headers["content-type"])
        expect((yield* countedHits) - before).toBe(1)
        // Redis forgot its scripts (a restart, SCRIPT FLUSH): the lookup sends the script again.
        yield* Effect.flatMap(Redis, (redis) => redis.use((c) => c.script("FLUSH"))).pipe(Effect.orDie)
        expect((yield* get("/v1/tickets?limit=3", customer.token)).text).toBe(stored.text)
        // Another URL is the app's: it shows the row. So is another spelling of the path than the router's own.
        expect(titles(yield* get("/v1/tickets?limit=4", customer.token))).toEqual(["behind", "first"])
        expect((yield* get("/v1/tickets//?limit=3", customer.token)).text).not.toBe(stored.text)
        // The counter moves on (the worker's invalidation): the app answers again.
        yield* bumpGeneration
        expect(titles(yield* get("/v1/tickets?limit=3", customer.token))).toEqual(["behind", "first"])
      }))

    it.scoped("one entry per query, however it is spelled; a parameter the endpoint does not declare is the app's", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const sql = yield* SqlClient.SqlClient
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token)
        const stored = yield* get("/v1/tickets?status=open&limit=5", customer.token)
        yield* sql`INSERT INTO tickets (title, description, owner_id) VALUES ('behind', 'd', ${customer.id})`
        // The same query, reordered and percent-encoded: the stored answer.
        expect((yield* get("/v1/tickets?limit=%35&status=open", customer.token)).text).toBe(stored.text)
        const digest = digestOf(customer.token)
        const keys = (yield* frontKeys(digest)).length
        // An undeclared or a repeated parameter: the app answers (it shows the row), and nothing more is stored.
        expect(titles(yield* get("/v1/tickets?status=open&limit=5&junk=1", customer.token))).toEqual([
          "behind",
          "first"
        ])
        expect(titles(yield* get("/v1/tickets?status=open&limit=5&junk=1", customer.token))).toEqual([
          "behind",
          "first"
        ])
        expect((yield* get("/v1/tickets?status=open&limit=5&limit=5", customer.token)).status).toBe(400)
        expect((yield* frontKeys(digest)).length).toBe(keys)
      }))

    it.scoped("values are spelt as the endpoint's schema writes them: many spellings of one query are one entry", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token)
        const digest = digestOf(customer.token)
        const first = yield* get("/v1/tickets?limit=20", customer.token)
        for (let zeros = 1; zeros <= 30; zeros++) {
          const r = yield* get(`/v1/tickets?limit=${"0".repeat(zeros)}20`, customer.token)
          expect(r.text).toBe(first.text)
        }
        expect(yield* frontKeys(digest)).toHaveLength(1)
      }))

    it.scoped("the counter's bump deletes the answers stored under the generation it ends", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const cache = yield* makeRedis(60) // the real listing cache's invalidation (the app here has none)
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token)
        const digest = digestOf(customer.token)
        for (let i = 0; i < 5; i++) {
          expect((yield* get("/v1/tickets?limit=20", customer.token)).status).toBe(200)
          expect((yield* get("/v1/tickets?limit=20", customer.token)).status).toBe(200)
          expect(yield* frontKeys(digest)).toHaveLength(1)
          yield* Effect.orDie(cache.invalidateAll) // what the worker runs on every ticket event
          expect(yield* frontKeys(digest)).toHaveLength(0)
        }
      }))

    it.scoped("another user's token never reads it", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const agent = yield* fx.user("agent")
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "the agent's", description: "d" }, agent.token)
        yield* post("/v1/tickets", { title: "mine", description: "d" }, customer.token)
        for (let i = 0; i < 3; i++) expect(titles(yield* get("/v1/tickets?limit=2", customer.token))).toEqual(["mine"])
        // The agent sees every ticket: never the customer's page.
        for (let i = 0; i < 3; i++) {
          expect(titles(yield* get("/v1/tickets?limit=2", agent.token))).toEqual(["mine", "the agent's"])
        }
        const other = yield* fx.user("customer")
        for (let i = 0; i < 3; i++) expect(titles(yield* get("/v1/tickets?limit=2", other.token))).toEqual([])
      }))

    it.scoped("a token not let in, or logged out through this process, goes the whole way: 401", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        for (let i = 0; i < 3; i++) expect((yield* get("/v1/tickets?limit=2", customer.token)).status).toBe(200)
        const digest = digestOf(customer.token)
        expect(yield* frontKeys(digest)).toHaveLength(1)
        // The same token with its signature's first character changed (the last carries spare bits): not let in.
        const [head, payload, signature] = customer.token.split(".") as [string, string, string]
        const forged = `${head}.${payload}.${signature[0] === "A" ? "B" : "A"}${signature.slice(1)}`
        expect((yield* get("/v1/tickets?limit=2", forged)).status).toBe(401)
        expect((yield* post("/v1/auth/logout", {}, customer.token)).status).toBe(204)
        const after = yield* get("/v1/tickets?limit=2", customer.token)
        expect(after.status).toBe(401)
      }))
  }
)
