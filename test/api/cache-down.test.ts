/** With Redis unreachable the API keeps answering: listings come from the database, /ready says redis is down. */
import { expect, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { TicketPage } from "../../src/Tickets/Domain.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { decode, get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

// Port 1 on loopback: nothing listens there, connections are refused at once.
const DeadRedis = Layer.setConfigProvider(
  ConfigProvider.fromMap(new Map([["REDIS_URL", "redis://127.0.0.1:1"]])).pipe(
    ConfigProvider.orElse(() => ConfigProvider.fromEnv())
  )
)

layer(apiTestLayer(TicketListCacheLive()).pipe(Layer.provide(DeadRedis)), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("Redis down", (it) => {
  it.scoped("listings, writes and reads still work; /ready is 503 naming redis", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const customer = yield* fx.user("customer")
      const created = yield* post("/v1/tickets", { title: "cacheless", description: "d" }, customer.token)
      expect(created.status).toBe(201)
      for (let i = 0; i < 3; i++) {
        const r = yield* get("/v1/tickets", customer.token)
        expect(r.status).toBe(200)
        expect(decode(TicketPage, r).items.map((t) => t.title)).toEqual(["cacheless"])
      }
      const ready = yield* get("/ready")
      expect(ready.status).toBe(503)
      expect(ready.body).toMatchObject({ checks: { database: "up", redis: "down" }, down: ["redis"] })
      expect((yield* get("/health")).status).toBe(200)
    }))
})
