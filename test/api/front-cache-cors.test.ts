/**
 * With CORS_ORIGINS set the app's answers carry CORS headers whether or not
 * the request has an Origin: the HTTP front cache (src/App/FrontCache.ts) is
 * then off, so every answer is the app's, headers and all, and nothing is
 * stored in front.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { Redis } from "../../src/Store/Redis.js"
import { get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiProductionServerLayer, PassThroughCache } from "./support/Layers.js"

process.env.CORS_ORIGINS = "https://app.example.com"

layer(apiProductionServerLayer(PassThroughCache), { excludeTestServices: true, timeout: "60 seconds" })(
  "HTTP front cache with CORS_ORIGINS set",
  (it) => {
    it.scoped("every listing is the app's, with its CORS headers, and none is stored in front", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const customer = yield* fx.user("customer")
        yield* post("/v1/tickets", { title: "first", description: "d" }, customer.token)
        for (let i = 0; i < 3; i++) {
          const r = yield* get("/v1/tickets?limit=2", customer.token)
          expect(r.status).toBe(200)
          expect(r.headers["access-control-allow-origin"]).toBe("https://app.example.com")
          expect(r.headers["access-control-expose-headers"]).toContain("x-request-id")
        }
        const digest = createHash("sha256").update(customer.token).digest("base64url")
        const keys = yield* Effect.flatMap(Redis, (redis) => redis.use((c) => c.keys(`front:*${digest}*`))).pipe(
          Effect.orDie
        )
        expect(keys).toEqual([])
      }))
  }
)
