/**
 * Cached listings answered by node:http itself (Http/NodeShortcut.ts, registered by Tickets/HotRoutes.ts).
 * The mechanics on a bare node server: a declined request, an `undefined` answer and a failure all reach
 * the server's own handler. Then the production server: a hit answered by the shortcut is the same, byte
 * for byte and header for header, as the first (full-route) answer; everything that is not a plain,
 * authenticated, cacheable listing still gets the full route's answer; every request is counted.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createServer, type IncomingMessage, request as httpRequest } from "node:http"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { installShortcut, NodeShortcut } from "../../src/Http/NodeShortcut.js"
import { httpRequests } from "../../src/App/RequestMetrics.js"
import { Metric } from "effect"
import { call, get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiProductionServerLayer } from "./support/Layers.js"

const fetchText = (port: number, path: string) =>
  new Promise<{ status: number; text: string; type: string | undefined }>((resolve, reject) => {
    httpRequest({ host: "127.0.0.1", port, path }, (res) => {
      let text = ""
      res.on("data", (d) => (text += d))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text, type: res.headers["content-type"] }))
    }).once("error", reject).end()
  })

describe("node:http shortcut mechanics", () => {
  it.live("declines, undefined answers and failures reach the server; answers are sent as they are", () =>
    Effect.promise(async () => {
      const server = createServer((_req, res) => res.writeHead(299, { "content-type": "text/plain" }).end("server"))
      const shortcut = installShortcut(server)
      shortcut.register((req: IncomingMessage) =>
        req.url === "/hit" ? Promise.resolve(Buffer.from("{\"from\":\"shortcut\"}"))
        : req.url === "/miss" ? Promise.resolve(undefined)
        : req.url === "/fail" ? Promise.reject(new Error("boom"))
        : undefined
      )
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
      const port = (server.address() as { port: number }).port
      try {
        expect(await fetchText(port, "/hit")).toEqual({ status: 200, text: "{\"from\":\"shortcut\"}", type: "application/json" })
        for (const path of ["/miss", "/fail", "/declined"]) {
          expect(await fetchText(port, path)).toEqual({ status: 299, text: "server", type: "text/plain" })
        }
        shortcut.register(undefined)
        expect((await fetchText(port, "/hit")).status).toBe(299)
      } finally {
        await new Promise((r) => server.close(r))
      }
    }))
})

const counted = (status: number) =>
  Metric.value(httpRequests.pipe(Metric.tagged("method", "GET"), Metric.tagged("route", "/v1/tickets"), Metric.tagged("status", String(status))))
    .pipe(Effect.map((s) => s.count))

layer(apiProductionServerLayer(TicketListCacheLive()), { excludeTestServices: true, timeout: "60 seconds" })("production server", (it) => {
  it.scoped("a cached listing answered by node:http equals the full route's answer", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const customer = yield* fx.user("customer")
      yield* post("/v1/tickets", { title: "shortcut", description: "d" }, customer.token)
      const before = yield* counted(200)
      // First the full route, with the shortcut unregistered (it stores the page); then the shortcut's hits.
      const server = yield* NodeShortcut
      const shortcut = server.current()
      expect(shortcut).toBeDefined()
      server.register(undefined)
      const first = yield* get("/v1/tickets?limit=7", customer.token)
      server.register(shortcut)
      const hits = yield* Effect.all([get("/v1/tickets?limit=7", customer.token), get("/v1/tickets?limit=7", customer.token)])
      for (const hit of hits) {
        expect(hit.status).toBe(200)
        expect(hit.text).toBe(first.text)
        expect(hit.headers["content-type"]).toBe(first.headers["content-type"])
        expect(hit.headers["content-length"]).toBe(first.headers["content-length"])
        expect(hit.headers["content-type"]).toBe("application/json")
      }
      expect(JSON.parse(first.text).items.map((t: { title: string }) => t.title)).toContain("shortcut")
      expect((yield* counted(200)) - before).toBe(3)
    }))

  it.scoped("anything else still gets the full route's answer", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const customer = yield* fx.user("customer")
      yield* get("/v1/tickets?limit=5", customer.token) // remembered token, cached page
      const bad400 = yield* counted(400)
      expect((yield* get("/v1/tickets?limit=abc", customer.token)).status).toBe(400)
      expect((yield* get("/v1/tickets?limit=0", customer.token)).status).toBe(400)
      expect((yield* counted(400)) - bad400).toBe(2)
      expect((yield* get("/v1/tickets?limit=5", `${customer.token}x`)).status).toBe(401)
      expect((yield* get("/v1/tickets?limit=5")).status).toBe(401)
      // A GET with a body, a repeated parameter, a cursor: the full route, which answers them as before.
      const withBody = yield* call("GET", "/v1/tickets?limit=5", { token: customer.token, raw: "{}" })
      expect(withBody.status).toBe(200)
      expect((yield* get("/v1/tickets?limit=5&limit=6", customer.token)).status).toBe(400)
      expect((yield* get("/v1/tickets?limit=5&cursor=nonsense", customer.token)).status).toBe(400)
    }))
})
