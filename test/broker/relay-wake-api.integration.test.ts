/**
 * Every API write that appends an event wakes the relay once it has committed
 * (RelayWake, Outbox/Outbox.ts): with the relay's poll ten minutes away, a
 * ticket created, updated and moved, and a message sent through the API are
 * each published by the wake-up alone.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { declareTopology } from "../../src/Broker/Topology.js"
import { FatalLive } from "../../src/Fatal.js"
import { RelayWake } from "../../src/Outbox/Outbox.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { patch, post } from "../api/support/Client.js"
import { makeFixtures } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import {
  commitEvents,
  configFrom,
  deleteEventRows,
  ticketCreated,
  unpublished,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

layer(RelayWake.Default.pipe(Layer.provideMerge(apiTestLayer())), {
  excludeTestServices: true,
  timeout: "120 seconds"
})("API writes wake the relay", (it) => {
  it.scoped("each write's event is published without the poll", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const sql = yield* SqlClient.SqlClient
      const customer = yield* fx.user("customer")
      const agent = yield* fx.user("agent")
      const { url } = yield* withVhost("relay-wake-api")
      const { channel } = yield* withAmqp(url)
      yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })

      const eventIds: Array<string> = []
      yield* Effect.addFinalizer(() => deleteEventRows(eventIds))
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      yield* Layer.buildWithScope(RelayLive.pipe(Layer.provide(PublisherLive), Layer.provide(FatalLive)), scope).pipe(
        Effect.withConfigProvider(configFrom({ AMQP_URL: url, OUTBOX_POLL_INTERVAL_MS: 600_000 }))
      )

      /** Waits until `eventId`'s row is published: by a wake-up, since the poll is not due. */
      const publishedBy = (what: string, eventId: string) =>
        waitUntil(
          `${what}: published by the wake-up`,
          Effect.map(unpublished([eventId]), (n) => n === 0),
          "10 seconds"
        )

      // The relay wakes once when its LISTEN starts: a sentinel published proves that wake-up spent.
      const sentinel = ticketCreated()
      eventIds.push(sentinel.eventId)
      yield* commitEvents([sentinel])
      yield* publishedBy("the sentinel", sentinel.eventId)

      /** The newest event of `eventType` about `entityId`, published. */
      const published = (what: string, entityId: string, eventType: string) =>
        Effect.gen(function*() {
          const [row] = yield* sql<{ eventId: string }>`SELECT event_id::text AS event_id FROM outbox
            WHERE event_type = ${eventType}
              AND (envelope->'payload'->>'id' = ${entityId} OR envelope->'payload'->>'ticketId' = ${entityId})
            ORDER BY id DESC LIMIT 1`
          expect(row, `${what}: its outbox row`).toBeDefined()
          eventIds.push(row!.eventId)
          yield* publishedBy(what, row!.eventId)
        })

      const created = yield* post("/v1/tickets", { title: "Wake", description: "the relay" }, customer.token)
      expect(created.status, created.text).toBe(201)
      const ticketId = (created.body as { id: string }).id
      yield* published("POST /v1/tickets", ticketId, "ticket.created")

      const updated = yield* patch(`/v1/tickets/${ticketId}`, { priority: "high" }, agent.token)
      expect(updated.status, updated.text).toBe(200)
      yield* published("PATCH /v1/tickets/:id", ticketId, "ticket.updated")

      const moved = yield* post(`/v1/tickets/${ticketId}/status`, { status: "in_progress" }, agent.token)
      expect(moved.status, moved.text).toBe(200)
      yield* published("POST /v1/tickets/:id/status", ticketId, "ticket.status_changed")

      const said = yield* post("/v1/messages", { ticketId, content: "awake?" }, agent.token)
      expect(said.status, said.text).toBe(201)
      yield* published("POST /v1/messages", ticketId, "message.sent")
    }))
})
