/**
 * Webhook deliveries end to end, against a real HTTP receiver on loopback
 * (test/webhooks/support/Receiver.ts) that verifies signatures with the
 * `standardwebhooks` package, with 127.0.0.1 allowed (WEBHOOK_ALLOW_PRIVATE):
 * the seed's manual steps through the API, relay, RabbitMQ (a vhost of its
 * own), the worker's claim and the dispatcher, one signed webhook per event;
 * a receiver that answers 500, hangs, redirects or answers 410; disabling
 * after a run of failures with its audit row; a rotation's overlap; the
 * test-fire and its log; and the address guard at send time.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { FatalLive } from "../../src/Fatal.js"
import { type DeliveryJob, WebhookSender } from "../../src/Notifications/Channel.js"
import { DispatcherLive } from "../../src/Notifications/Dispatcher.js"
import { EmailSenderLive } from "../../src/Notifications/Email.js"
import { DeliveriesRepo } from "../../src/Notifications/Repo.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WebhookPoster, WebhookSenderLive, WebhookSenderWithoutDependencies } from "../../src/Webhooks/Channel.js"
import { RotatedSecret, TestFireResult, WebhookDeliveryPage, WebhookSubscription } from "../../src/Webhooks/Domain.js"
import { WebhooksRepo } from "../../src/Webhooks/Repo.js"
import { HostResolver } from "../../src/Webhooks/Ssrf.js"
import { readDisabledWebhooks } from "../../src/Webhooks/Status.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { FaultsLive } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { decode, get, patch, post } from "../api/support/Client.js"
import { auditRows } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { configFrom, deleteEventRows, waitUntil, withVhost } from "../support/Env.js"
import { withSettings } from "../support/LoginThrottle.js"
import { trackSubscriptions } from "./support/Cleanup.js"
import { type Received, verifies, verify, withReceiver } from "./support/Receiver.js"
import { subscribedReceiver } from "./support/Subscription.js"

const WEBHOOKS = {
  WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
  WEBHOOK_TIMEOUT_MS: 1500,
  WEBHOOK_DISABLE_AFTER: 3
}

/** Quick tiers, so a test sees retries and failures in well under a second each. */
const DISPATCH = {
  ...WEBHOOKS,
  DISPATCH_POLL_INTERVAL_MS: 200,
  DISPATCH_LEASE_MS: 30_000,
  IMMEDIATE_RETRIES: 1,
  IMMEDIATE_RETRY_DELAY_MS: 5,
  MAX_RETRIES: 2,
  RETRY_INITIAL_DELAY_MS: 100,
  RETRY_MAX_DELAY_MS: 200,
  METRICS_INTERVAL_MS: 60_000
}

const ApiLive = apiTestLayer().pipe(Layer.provide(withSettings(WEBHOOKS)))

/** The dispatcher with the real webhook sender (and the fake email sender), until the scope closes. */
const startDispatcher = (scope: Scope.Scope, settings: Record<string, string | number> = {}) =>
  Layer.buildWithScope(
    DispatcherLive.pipe(Layer.provide([DeliveriesRepo.Default, EmailSenderLive, WebhookSenderLive])),
    scope
  ).pipe(Effect.withConfigProvider(configFrom({ ...DISPATCH, ...settings })))

/** The dispatcher (quick tiers) for the rest of the test. */
const dispatching = Effect.gen(function*() {
  const scope = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
  yield* startDispatcher(scope)
})

/** A pending webhook delivery of a made-up ticket event, as the claim statement writes them. */
const insertDelivery = (subscriptionId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const eventId = crypto.randomUUID()
    const envelope = {
      event: "ticket.created",
      eventId,
      occurredAt: new Date().toISOString(),
      payload: { id: crypto.randomUUID(), title: "From a test" }
    }
    const key = `${eventId}-${subscriptionId}`
    const [row] = yield* sql<{ id: string }>`INSERT INTO deliveries
        (idempotency_key, channel, event_id, event_type, subscription_id, payload)
      VALUES (${key}, 'webhook', ${eventId}, 'ticket.created', ${subscriptionId}, ${JSON.stringify(envelope)}::json)
      RETURNING id::text AS id`
    return { id: row!.id, key, eventId }
  }).pipe(Effect.orDie)

const deliveryRow = (id: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ state: string; attempts: number; lastError: string | null; lastStatus: number | null }>`
      SELECT state, attempts, last_error, last_status FROM deliveries WHERE id = ${id}`.pipe(
        Effect.map((rows) => rows[0]!)
      )
  ).pipe(Effect.orDie)

const attemptsOf = (id: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ attempt: number | null; outcome: string; status: number | null; error: string | null }>`
      SELECT attempt, outcome, status, error FROM delivery_attempt_log WHERE delivery_id = ${id} ORDER BY attempted_at, id`
  )
    .pipe(Effect.orDie)

const settled = (id: string) =>
  waitUntil(`delivery ${id} to settle`, Effect.map(deliveryRow(id), (r) => r.state !== "pending"), "30 seconds")

const forKey = (received: ReadonlyArray<Received>, key: string) =>
  received.filter((r) => r.headers["webhook-id"] === key)

layer(ApiLive, { excludeTestServices: true, timeout: "120 seconds" })("webhook deliveries", (it) => {
  it.scoped("the seed's manual steps: one signed webhook per event, its webhook-id the delivery's key", () =>
    Effect.gen(function*() {
      const { admin, fx, receiver, subscription } = yield* subscribedReceiver(
        "/seed",
        ["ticket.created", "ticket.updated", "ticket.status_changed", "message.sent"]
      )
      const agent = yield* fx.user("agent")

      // The seed's steps, plus an assignment and a status change: four events in the outbox.
      const ticket = yield* post("/v1/tickets", { title: "Test Ticket", description: "Testing messaging" }, admin.token)
      expect(ticket.status).toBe(201)
      const ticketId = (ticket.body as { id: string }).id
      expect((yield* post(`/v1/tickets/${ticketId}/status`, { status: "in_progress" }, admin.token)).status).toBe(200)
      const patched = yield* patch(`/v1/tickets/${ticketId}`, { assigneeId: agent.id }, admin.token)
      expect(patched.status, patched.text).toBe(200)
      const message = yield* post("/v1/messages", { ticketId, content: "Test message" }, admin.token)
      expect(message.status).toBe(201)
      const sql = yield* SqlClient.SqlClient
      const events = yield* sql<{ eventId: string; eventType: string }>`SELECT event_id::text AS event_id, event_type
        FROM outbox WHERE envelope->'payload'->>'id' = ${ticketId} OR envelope->'payload'->>'ticketId' = ${ticketId}
        ORDER BY id`
      expect(events.map((e) => e.eventType).sort()).toEqual(
        ["message.sent", "ticket.created", "ticket.status_changed", "ticket.updated"]
      )
      const eventIds = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() =>
        Effect.zipRight(
          sql`DELETE FROM deliveries WHERE event_id IN ${sql.in(eventIds)}`.pipe(Effect.orDie),
          deleteEventRows(eventIds)
        )
      )

      // Relay → RabbitMQ → worker (claim: the webhook deliveries) → dispatcher → the receiver.
      const { url } = yield* withVhost("webhooks")
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      yield* Layer.buildWithScope(
        Layer.mergeAll(
          RelayLive.pipe(Layer.provide(PublisherLive)),
          WorkerLive.pipe(Layer.provide([EventStoreLive, TicketListCacheLive(), FaultsLive, WorkerMetricsLive]))
        ).pipe(Layer.provide(FatalLive)),
        scope
      ).pipe(Effect.withConfigProvider(configFrom({ ...DISPATCH, AMQP_URL: url })))
      yield* startDispatcher(scope, { AMQP_URL: url })

      const mine = () => receiver.received.filter((r) => r.path === "/seed")
      yield* waitUntil("four webhooks", Effect.sync(() => mine().length >= 4), "60 seconds")
      const bodies = mine().map((r) =>
        verify(subscription.secret, r) as { type: string; eventId: string; data: unknown }
      )
      expect(bodies.map((b) => b.type).sort()).toEqual(
        ["message.sent", "ticket.created", "ticket.status_changed", "ticket.updated"]
      )
      expect(bodies.map((b) => b.eventId).sort()).toEqual([...eventIds].sort())
      const keys = yield* sql<{ idempotencyKey: string; state: string }>`SELECT idempotency_key, state FROM deliveries
        WHERE channel = 'webhook' AND subscription_id = ${subscription.id} ORDER BY id`
      expect(keys).toHaveLength(4)
      expect(mine().map((r) => r.headers["webhook-id"]).sort()).toEqual(keys.map((k) => k.idempotencyKey).sort())
      yield* waitUntil(
        "the deliveries to be recorded",
        Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM deliveries
            WHERE subscription_id = ${subscription.id} AND state = 'delivered'`,
          (rows) => rows[0]!.n === 4
        )
      )
      expect(mine().every((r) => r.headers["content-type"] === "application/json")).toBe(true)
      expect(mine().every((r) => r.headers["user-agent"] === "OpsDesk-Webhooks/1.0")).toBe(true)
      // Sent once each: nothing retried a delivered webhook.
      expect(mine()).toHaveLength(4)
    }))

  it.scoped("500, 500, then 200: retried with the same webhook-id until delivered; the failure count resets", () =>
    Effect.gen(function*() {
      const { admin, receiver, subscription } = yield* subscribedReceiver("/flaky")
      receiver.script([
        { _tag: "Status", status: 500, body: "database is down" },
        { _tag: "Status", status: 500 }
      ])
      const delivery = yield* insertDelivery(subscription.id)
      yield* dispatching
      yield* settled(delivery.id)
      expect(yield* deliveryRow(delivery.id)).toMatchObject({ state: "delivered", attempts: 3, lastStatus: 200 })
      const attempts = yield* attemptsOf(delivery.id)
      expect(attempts.map((a) => a.outcome)).toEqual(["retry", "retry", "delivered"])
      expect(attempts[0]).toMatchObject({ status: 500, error: "the receiver answered 500: database is down" })
      const requests = forKey(receiver.received, delivery.key)
      expect(requests).toHaveLength(3)
      for (const r of requests) expect(verifies(subscription.secret, r)).toBe(true)
      // Each try carries its number, the one its row in the attempt log has.
      expect(requests.map((r) => r.headers["x-opsdesk-attempt"])).toEqual(["1", "2", "3"])
      expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3])
      // Each attempt is signed anew (its own timestamp), under the same id.
      const shown = decode(WebhookSubscription, yield* get(`/v1/webhooks/${subscription.id}`, admin.token))
      expect(shown).toMatchObject({ active: true, consecutiveFailures: 0 })
      // Prometheus: tries by channel and outcome, and their latency by channel (src/Notifications/Metrics.ts).
      const metrics = (yield* get("/metrics")).text
      for (const outcome of ["retry", "delivered"]) {
        expect(metrics).toMatch(
          new RegExp(`opsdesk_delivery_attempts_total\\{[^}]*channel="webhook"[^}]*outcome="${outcome}"[^}]*\\} [1-9]`)
        )
      }
      expect(metrics).toMatch(/opsdesk_delivery_attempt_seconds_count\{[^}]*channel="webhook"[^}]*\} [1-9]/)
      expect(metrics).toMatch(/opsdesk_delivery_attempt_seconds_bucket\{[^}]*channel="webhook"/)
      expect(metrics).toMatch(/opsdesk_delivery_claims_total\{[^}]*channel="webhook"[^}]*\} [1-9]/)
    }))

  it.scoped("a receiver that hangs: the attempt times out and is retried", () =>
    Effect.gen(function*() {
      const { receiver, subscription } = yield* subscribedReceiver("/slow")
      receiver.script([{ _tag: "Hang" }])
      const delivery = yield* insertDelivery(subscription.id)
      yield* dispatching
      yield* settled(delivery.id)
      expect(yield* deliveryRow(delivery.id)).toMatchObject({ state: "delivered", attempts: 2 })
      const attempts = yield* attemptsOf(delivery.id)
      expect(attempts.map((a) => a.outcome)).toEqual(["retry", "delivered"])
      expect(attempts[0]).toMatchObject({ status: null, error: "no answer within 1500 ms" })
      expect(forKey(receiver.received, delivery.key)).toHaveLength(2)
    }))

  it.scoped("a redirect is not followed: the delivery fails with where it pointed", () =>
    Effect.gen(function*() {
      const { receiver, subscription } = yield* subscribedReceiver("/moved")
      receiver.script([{ _tag: "Redirect", status: 301, location: receiver.url("/elsewhere") }])
      const delivery = yield* insertDelivery(subscription.id)
      yield* dispatching
      yield* settled(delivery.id)
      const row = yield* deliveryRow(delivery.id)
      expect(row).toMatchObject({ state: "failed", attempts: 1, lastStatus: 301 })
      expect(row.lastError).toBe(
        `the receiver redirected (301 to ${
          receiver.url("/elsewhere")
        }); redirects are not followed: point the subscription at the final URL`
      )
      expect(receiver.received.filter((r) => r.path === "/elsewhere")).toEqual([])
      expect(forKey(receiver.received, delivery.key)).toHaveLength(1)
    }))

  it.scoped("WEBHOOK_DISABLE_AFTER failures in a row disable the subscription, with one audit row; then nothing is sent", () =>
    Effect.gen(function*() {
      const { admin, receiver, subscription } = yield* subscribedReceiver("/down")
      receiver.setFallback({ _tag: "Status", status: 503 })
      const first = yield* insertDelivery(subscription.id)
      yield* dispatching
      yield* waitUntil(
        "the subscription to be disabled",
        Effect.map(get(`/v1/webhooks/${subscription.id}`, admin.token), (r) => !decode(WebhookSubscription, r).active),
        "30 seconds"
      )
      const shown = decode(WebhookSubscription, yield* get(`/v1/webhooks/${subscription.id}`, admin.token))
      expect(shown.consecutiveFailures).toBe(3)
      expect(shown.disabledAt).not.toBeNull()
      expect(shown.disabledReason).toBe(
        "disabled after 3 failed attempts in a row; the last: the receiver answered 503"
      )
      yield* settled(first.id)
      const row = yield* deliveryRow(first.id)
      expect(row.state).toBe("failed")
      const sent = forKey(receiver.received, first.key).length
      expect(sent).toBe(3)

      const audit = (yield* auditRows(subscription.id)).filter((a) => a.action === "webhook.disable")
      expect(audit).toEqual([{
        actorId: null,
        action: "webhook.disable",
        entity: "webhook_subscription",
        entityId: subscription.id,
        changes: { reason: shown.disabledReason, consecutiveFailures: 3 }
      }])

      // The dashboard's flag (the overview's `webhooks` panel) names it.
      const flagged = yield* readDisabledWebhooks
      expect(flagged.items.find((i) => i.id === subscription.id)).toMatchObject({
        url: receiver.url("/down"),
        disabledReason: shown.disabledReason
      })

      // A later event for it fails at once, unsent, with the reason.
      const later = yield* insertDelivery(subscription.id)
      yield* settled(later.id)
      expect((yield* deliveryRow(later.id)).lastError).toBe(
        `the webhook subscription is disabled (${shown.disabledReason})`
      )
      expect(forKey(receiver.received, later.key)).toEqual([])

      // Re-enabling starts afresh.
      const back = decode(
        WebhookSubscription,
        yield* patch(`/v1/webhooks/${subscription.id}`, { active: true }, admin.token)
      )
      expect(back).toMatchObject({ active: true, consecutiveFailures: 0, disabledAt: null, disabledReason: null })
      expect((yield* readDisabledWebhooks).items.map((i) => i.id)).not.toContain(subscription.id)
    }))

  it.scoped("410 Gone disables the subscription at once", () =>
    Effect.gen(function*() {
      const { admin, receiver, subscription } = yield* subscribedReceiver("/gone")
      receiver.script([{ _tag: "Status", status: 410 }])
      const delivery = yield* insertDelivery(subscription.id)
      yield* dispatching
      yield* settled(delivery.id)
      expect(yield* deliveryRow(delivery.id)).toMatchObject({ state: "failed", attempts: 1, lastStatus: 410 })
      const shown = decode(WebhookSubscription, yield* get(`/v1/webhooks/${subscription.id}`, admin.token))
      expect(shown).toMatchObject({
        active: false,
        disabledReason: "disabled: the receiver answered 410 Gone: the subscription is disabled"
      })
      expect((yield* auditRows(subscription.id)).map((a) => a.action)).toContain("webhook.disable")
    }))

  it.scoped("test-fire: signed with both secrets during a rotation's overlap, with the new one only after; logged", () =>
    Effect.gen(function*() {
      const { admin, receiver, subscription } = yield* subscribedReceiver("/rotating", ["message.sent"])
      const rotated = decode(
        RotatedSecret,
        yield* post(`/v1/webhooks/${subscription.id}/rotate-secret`, { overlapSeconds: 600 }, admin.token)
      )
      const fired = yield* post(`/v1/webhooks/${subscription.id}/test`, {}, admin.token)
      expect(fired.status, fired.text).toBe(200)
      const result = decode(TestFireResult, fired)
      expect(result).toMatchObject({ delivered: true, status: 200, error: null })
      const during = receiver.received.at(-1)!
      expect(String(during.headers["webhook-signature"]).split(" ")).toHaveLength(2)
      expect(verify(rotated.secret, during)).toMatchObject({
        type: "webhook.test",
        data: { subscriptionId: subscription.id }
      })
      expect(verifies(subscription.secret, during)).toBe(true)

      yield* post(`/v1/webhooks/${subscription.id}/rotate-secret`, { overlapSeconds: 0 }, admin.token).pipe(
        Effect.map((r) => decode(RotatedSecret, r)),
        Effect.tap((latest) =>
          Effect.gen(function*() {
            receiver.script([{ _tag: "Status", status: 500, body: "nope" }])
            const failed = decode(TestFireResult, yield* post(`/v1/webhooks/${subscription.id}/test`, {}, admin.token))
            expect(failed).toMatchObject({ delivered: false, status: 500, error: "the receiver answered 500: nope" })
            const after = receiver.received.at(-1)!
            expect(String(after.headers["webhook-signature"]).split(" ")).toHaveLength(1)
            expect(verifies(latest.secret, after)).toBe(true)
            expect(verifies(rotated.secret, after)).toBe(false)
            expect(verifies(subscription.secret, after)).toBe(false)
          })
        )
      )
      // Both test-fires are in the log, newest first; neither counted towards disabling.
      const log = decode(WebhookDeliveryPage, yield* get(`/v1/webhooks/${subscription.id}/deliveries`, admin.token))
      expect(log.items.map((d) => [d.eventType, d.state])).toEqual([["webhook.test", "failed"], [
        "webhook.test",
        "delivered"
      ]])
      expect(log.items[1]!.id).toBe(result.deliveryId)
      expect(log.items[1]!.attemptLog).toHaveLength(1)
      expect(log.items[1]!.idempotencyKey).toBe(during.headers["webhook-id"])
      const shown = decode(WebhookSubscription, yield* get(`/v1/webhooks/${subscription.id}`, admin.token))
      expect(shown.consecutiveFailures).toBe(0)
    }))

  it.scoped("the address guard runs again at send time and connects only to the checked address", () =>
    Effect.gen(function*() {
      const receiver = yield* withReceiver
      const track = yield* trackSubscriptions
      const sql = yield* SqlClient.SqlClient
      // Rows as an allowlist of the past (or a DNS answer of the past) let them in.
      const insert = (url: string) =>
        sql<{ id: string }>`INSERT INTO webhook_subscriptions (url, event_types, secret)
          VALUES (${url}, ARRAY['ticket.created'], ${"whsec_" + Buffer.alloc(32, 1).toString("base64")})
          RETURNING id`.pipe(Effect.map((rows) => rows[0]!.id), Effect.orDie)
      const viaLocalhost = yield* insert(`http://localhost:${receiver.port}/local`)
      const viaName = yield* insert(`http://hooks.test:${receiver.port}/pinned`)
      track(viaLocalhost)
      track(viaName)
      const job = (subscriptionId: string, key: string): DeliveryJob => ({
        id: "0",
        idempotencyKey: key,
        channel: "webhook",
        eventId: crypto.randomUUID(),
        eventType: "ticket.created",
        recipientId: null,
        subscriptionId,
        payload: {
          event: "ticket.created",
          eventId: crypto.randomUUID(),
          occurredAt: new Date().toISOString(),
          payload: {}
        },
        attempt: 1
      })
      /** The sender with the given allowlist and resolver (`hooks.test`: first a public address, then 127.0.0.1). */
      let lookups = 0
      const resolver = Layer.succeed(
        HostResolver,
        HostResolver.of({
          resolve: (host) =>
            host === "localhost"
              ? Effect.succeed([{ address: "127.0.0.1", family: 4 as const }])
              : Effect.sync(() => [{ address: lookups++ === 0 ? "93.184.216.34" : "127.0.0.1", family: 4 as const }])
        })
      )
      const sender = (allow: string) =>
        Effect.map(
          Layer.build(
            WebhookSenderWithoutDependencies.pipe(
              Layer.provide([
                WebhooksRepo.Default,
                WebhookPoster.DefaultWithoutDependencies.pipe(Layer.provide(resolver))
              ])
            )
          ).pipe(Effect.withConfigProvider(configFrom({ ...WEBHOOKS, WEBHOOK_ALLOW_PRIVATE: allow }))),
          (ctx) => Context.get(ctx, WebhookSender)
        )

      // Without the allowlist: a name resolving to 127.0.0.1 is refused, and nothing connects.
      const strict = yield* sender("")
      const refused = yield* strict.deliver(job(viaLocalhost, "k-local"))
      expect(refused).toEqual({
        _tag: "Permanent",
        reason:
          "not sent: url's host localhost resolves to 127.0.0.1 (loopback): webhooks go to public addresses only, unless WEBHOOK_ALLOW_PRIVATE lists the host"
      })
      // DNS rebinding: checked public once, 127.0.0.1 at the next send, which is refused.
      lookups = 0
      yield* Effect.either(
        (yield* sender("")).deliver(job(viaName, "k-first")).pipe(Effect.timeout("10 seconds"))
      )
      const rebound = yield* strict.deliver(job(viaName, "k-rebound"))
      expect(rebound._tag).toBe("Permanent")
      expect(receiver.received.filter((r) => r.path === "/local" || r.headers["webhook-id"] === "k-rebound")).toEqual(
        []
      )

      // With 127.0.0.1 allowed: `hooks.test` (unknown to the system's DNS) reaches the receiver through the pinned
      // address, with its own name in the Host header.
      const allowing = yield* sender("127.0.0.1")
      const delivered = yield* allowing.deliver(job(viaName, "k-pinned"))
      expect(delivered).toEqual({ _tag: "Delivered", status: 200 })
      const pinned = forKey(receiver.received, "k-pinned")
      expect(pinned).toHaveLength(1)
      expect(pinned[0]!.headers.host).toBe(`hooks.test:${receiver.port}`)
      expect(pinned[0]!.path).toBe("/pinned")
    }))
})
