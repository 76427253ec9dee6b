/**
 * The events contract: the AsyncAPI document built from the event Schemas is
 * valid for @asyncapi/parser (no error, no warning), its examples are events
 * the worker accepts, docs/asyncapi.json and docs/EVENTS.md are current
 * (`npm run docs:events`), and the API serves it at /asyncapi.json.
 */
import { Parser } from "@asyncapi/parser"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Either } from "effect"
import { readFileSync } from "node:fs"
import { eventsDocs } from "../../scripts/lib/eventsDocs.js"
import { asyncApiDocument, EXAMPLES } from "../../src/Broker/AsyncApi.js"
import { decodeEventJson, EVENT_NAMES } from "../../src/Domain/Events.js"
import { call, get } from "../api/support/Client.js"
import { apiTestLayer } from "../api/support/Layers.js"

describe("the AsyncAPI document", () => {
  it.effect("is valid AsyncAPI: no error and no warning from @asyncapi/parser", () =>
    Effect.gen(function*() {
      const { diagnostics, document } = yield* Effect.promise(() =>
        new Parser().parse(JSON.stringify(asyncApiDocument()))
      )
      // Severities: 0 error, 1 warning, 2 information, 3 hint.
      expect(diagnostics.filter((d) => d.severity <= 1).map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`))
        .toEqual([])
      expect(document).toBeDefined()
      const names = document!.allMessages().all().map((m) => m.name()).filter((n) => !n?.startsWith("dead."))
      expect(names.sort()).toEqual([...EVENT_NAMES].sort())
      expect(document!.channels().all().map((c) => c.address()).sort()).toEqual([...EVENT_NAMES, "tickets.dlq"].sort())
    }), 120_000)

  it("its examples are events the worker accepts, and each event's schema names every field the example has", () => {
    const doc = asyncApiDocument() as {
      components: { messages: Record<string, { payload: { properties: Record<string, { properties?: object }> } }> }
    }
    for (const name of EVENT_NAMES) {
      const example = EXAMPLES[name]
      expect(decodeEventJson(JSON.stringify(example))).toEqual(Either.right(example))
      const schema = doc.components.messages[name]!.payload
      expect(Object.keys(schema.properties).sort()).toEqual(Object.keys(example).sort())
      expect(Object.keys(schema.properties["payload"]!.properties!).sort()).toEqual(Object.keys(example.payload).sort())
    }
  })

  it("docs/asyncapi.json and docs/EVENTS.md are current (else: npm run docs:events)", () => {
    for (const [path, text] of Object.entries(eventsDocs())) {
      expect(readFileSync(new URL(`../../${path}`, import.meta.url), "utf8"), path).toBe(text)
    }
  })
})

layer(apiTestLayer(), { excludeTestServices: true, timeout: "60 seconds" })("GET /asyncapi.json", (it) => {
  it.effect("serves the document, with an ETag and revalidation", () =>
    Effect.gen(function*() {
      const r = yield* get("/asyncapi.json")
      expect(r.status).toBe(200)
      expect(r.headers["content-type"]).toContain("application/json")
      expect(r.body).toEqual(asyncApiDocument())
      const etag = r.headers["etag"]
      expect(etag).toMatch(/^"/)
      const again = yield* call("GET", "/asyncapi.json", { headers: { "if-none-match": String(etag) } })
      expect(again.status).toBe(304)
    }))
})
