/**
 * The webhook admin API against the real PostgreSQL, WITHOUT an allowlist
 * (WEBHOOK_ALLOW_PRIVATE empty): every bad input gets its 4xx with a clear
 * message, a name that resolves to 127.0.0.1 is refused, only admins get in,
 * the secret is shown only at creation and rotation, every change has its
 * audit row, and the delivery log pages. Deliveries themselves are in
 * delivery.test.ts (with 127.0.0.1 allowed, for a receiver on loopback).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import {
  CreatedWebhookSubscription,
  RotatedSecret,
  WebhookDeliveryPage,
  WebhookSubscription,
  WebhookSubscriptionPage
} from "../../src/Webhooks/Domain.js"
import { call, decode, get, patch, post } from "../api/support/Client.js"
import { auditRows, makeFixtures } from "../api/support/Fixtures.js"
import { apiTestLayer } from "../api/support/Layers.js"
import { withSettings } from "../support/LoginThrottle.js"
import { trackSubscriptions } from "./support/Cleanup.js"
import { withSubscription } from "./support/Subscription.js"

// A public address, given literally: no DNS (the machine may have none) and nothing listens there for us.
const PUBLIC_URL = "https://93.184.216.34/hooks/opsdesk"

const ApiLive = apiTestLayer().pipe(Layer.provide(withSettings({ WEBHOOK_ALLOW_PRIVATE: "" })))

layer(ApiLive, { excludeTestServices: true, timeout: "60 seconds" })("webhooks API", (it) => {
  it.scoped("an admin creates a subscription: 201 with the secret, once; reads never show it; audited", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const track = yield* trackSubscriptions
      const admin = yield* fx.user("admin")
      const r = yield* post("/v1/webhooks", {
        url: PUBLIC_URL,
        eventTypes: ["ticket.created", "message.sent"],
        description: "CRM sync"
      }, admin.token)
      expect(r.status, r.text).toBe(201)
      const created = decode(CreatedWebhookSubscription, r)
      track(created.id)
      expect(created).toMatchObject({
        url: PUBLIC_URL,
        eventTypes: ["ticket.created", "message.sent"],
        description: "CRM sync",
        active: true,
        consecutiveFailures: 0,
        disabledAt: null,
        previousSecretExpiresAt: null
      })
      expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)

      const one = yield* get(`/v1/webhooks/${created.id}`, admin.token)
      expect(one.status).toBe(200)
      expect(decode(WebhookSubscription, one).id).toBe(created.id)
      expect(one.text).not.toContain(created.secret.slice(6))
      const listed = yield* get("/v1/webhooks?limit=100", admin.token)
      expect(listed.text).not.toContain(created.secret.slice(6))

      const audit = yield* auditRows(created.id)
      expect(audit).toEqual([{
        actorId: admin.id,
        action: "webhook.create",
        entity: "webhook_subscription",
        entityId: created.id,
        changes: {
          url: PUBLIC_URL,
          eventTypes: ["ticket.created", "message.sent"],
          description: "CRM sync",
          active: true
        }
      }])
      expect(JSON.stringify(audit)).not.toContain(created.secret.slice(6))
    }))

  it.scoped("a caller's own secret is kept; a secret too short or malformed is a 400 that never quotes it", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const track = yield* trackSubscriptions
      const admin = yield* fx.user("admin")
      const own = "whsec_" + Buffer.alloc(32, 9).toString("base64")
      const r = yield* post(
        "/v1/webhooks",
        { url: PUBLIC_URL, eventTypes: ["ticket.updated"], secret: own },
        admin.token
      )
      expect(r.status, r.text).toBe(201)
      track(decode(CreatedWebhookSubscription, r).id)
      expect(decode(CreatedWebhookSubscription, r).secret).toBe(own)

      const short = "whsec_" + Buffer.alloc(16, 5).toString("base64")
      const tooShort = yield* post(
        "/v1/webhooks",
        { url: PUBLIC_URL, eventTypes: ["ticket.updated"], secret: short },
        admin.token
      )
      expect(tooShort.status).toBe(400)
      expect(tooShort.text).toMatch(/secret is too short: its key has 16 bytes, at least 24/)
      expect(tooShort.text).not.toContain(short.slice(6))
      const plain = yield* post("/v1/webhooks", {
        url: PUBLIC_URL,
        eventTypes: ["ticket.updated"],
        secret: "my-shared-secret-1234567890"
      }, admin.token)
      expect(plain.status).toBe(400)
      expect(plain.text).toMatch(/secret must be \\"whsec_\\" followed by the base64/)
      expect(plain.text).not.toContain("my-shared-secret")
    }))

  it.scoped("every bad input is a 400 saying what is wrong, and nothing is stored", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const sql = yield* SqlClient.SqlClient
      const before = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM webhook_subscriptions`
      const cases: Array<[unknown, RegExp]> = [
        [{ url: "http://93.184.216.34/hook", eventTypes: ["ticket.created"] }, /url must use https/],
        [
          { url: "https://localhost/hook", eventTypes: ["ticket.created"] },
          /localhost resolves to 127\.0\.0\.1 \(loopback\)/
        ],
        [{ url: "http://localhost:9/hook", eventTypes: ["ticket.created"] }, /127\.0\.0\.1 \(loopback\)/],
        [{ url: "https://10.0.0.8/hook", eventTypes: ["ticket.created"] }, /10\.0\.0\.8 \(private\)/],
        [{ url: "https://169.254.169.254/latest/meta-data", eventTypes: ["ticket.created"] }, /linkLocal/],
        [{ url: "https://[::ffff:127.0.0.1]/", eventTypes: ["ticket.created"] }, /loopback/],
        [{ url: "https://[fd00::1]/", eventTypes: ["ticket.created"] }, /uniqueLocal/],
        [{ url: "https://0.0.0.0/", eventTypes: ["ticket.created"] }, /unspecified/],
        [{ url: "not a url", eventTypes: ["ticket.created"] }, /url is not a valid absolute URL/],
        [{ url: "ftp://93.184.216.34/", eventTypes: ["ticket.created"] }, /url must use https, not ftp:/],
        [{ url: "https://u:p@93.184.216.34/", eventTypes: ["ticket.created"] }, /must not contain credentials/],
        [{ url: PUBLIC_URL, eventTypes: ["ticket.deleted"] }, /unknown event type: expected one of ticket\.created/],
        [{ url: PUBLIC_URL, eventTypes: [] }, /eventTypes must name at least one event type/],
        [{ url: PUBLIC_URL, eventTypes: ["ticket.created", "ticket.created"] }, /must not repeat/],
        [{ url: PUBLIC_URL }, /eventTypes/],
        [{ url: PUBLIC_URL, eventTypes: ["ticket.created"], description: "x".repeat(501) }, /at most 500/]
      ]
      for (const [payload, message] of cases) {
        const r = yield* post("/v1/webhooks", payload, admin.token)
        expect(r.status, JSON.stringify(payload).slice(0, 80)).toBe(400)
        expect(r.text, JSON.stringify(payload).slice(0, 80)).toMatch(message)
        expect(r.headers["content-type"]).toContain("application/problem+json")
      }
      const privateUrl = yield* post(
        "/v1/webhooks",
        { url: "https://localhost/", eventTypes: ["ticket.created"] },
        admin.token
      )
      expect(privateUrl.body).toMatchObject({ _tag: "ValidationError", field: "url" })
      const after = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM webhook_subscriptions`
      expect(after[0]!.n).toBe(before[0]!.n)
    }))

  it.scoped("only admins: agents and customers get 403, anonymous 401", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const track = yield* trackSubscriptions
      const admin = yield* fx.user("admin")
      const made = yield* post("/v1/webhooks", { url: PUBLIC_URL, eventTypes: ["ticket.created"] }, admin.token)
      const id = decode(CreatedWebhookSubscription, made).id
      track(id)
      for (const role of ["agent", "customer"] as const) {
        const user = yield* fx.user(role)
        const attempts = [
          yield* post("/v1/webhooks", { url: PUBLIC_URL, eventTypes: ["ticket.created"] }, user.token),
          yield* get("/v1/webhooks", user.token),
          yield* get(`/v1/webhooks/${id}`, user.token),
          yield* patch(`/v1/webhooks/${id}`, { active: false }, user.token),
          yield* call("DELETE", `/v1/webhooks/${id}`, { token: user.token }),
          yield* post(`/v1/webhooks/${id}/rotate-secret`, {}, user.token),
          yield* post(`/v1/webhooks/${id}/test`, {}, user.token),
          yield* get(`/v1/webhooks/${id}/deliveries`, user.token)
        ]
        for (const r of attempts) {
          expect(r.status, role).toBe(403)
          expect(r.body).toMatchObject({ _tag: "Forbidden" })
        }
      }
      expect((yield* get("/v1/webhooks")).status).toBe(401)
      const stillActive = decode(WebhookSubscription, yield* get(`/v1/webhooks/${id}`, admin.token))
      expect(stillActive.active).toBe(true)
    }))

  it.scoped("update (URL re-checked, audit of what changed), delete (204, then 404), unknown ids 404", () =>
    Effect.gen(function*() {
      const { admin, subscription: made } = yield* withSubscription(PUBLIC_URL)
      const refused = yield* patch(`/v1/webhooks/${made.id}`, { url: "https://127.0.0.1/x" }, admin.token)
      expect(refused.status).toBe(400)
      expect(refused.body).toMatchObject({ _tag: "ValidationError", field: "url" })
      expect((yield* patch(`/v1/webhooks/${made.id}`, {}, admin.token)).status).toBe(400)
      // An update is held to the same rules as a creation, each a problem saying what is wrong.
      const badUpdates: Array<[unknown, RegExp]> = [
        [{ url: "http://93.184.216.34/hook" }, /url must use https/],
        [{ url: "https://10.0.0.8/hook" }, /10\.0\.0\.8 \(private\)/],
        [{ eventTypes: ["ticket.deleted"] }, /unknown event type: expected one of ticket\.created/],
        [{ eventTypes: [] }, /eventTypes must name at least one event type/]
      ]
      for (const [payload, message] of badUpdates) {
        const r = yield* patch(`/v1/webhooks/${made.id}`, payload, admin.token)
        expect(r.status, JSON.stringify(payload)).toBe(400)
        expect(r.headers["content-type"]).toContain("application/problem+json")
        expect(r.text, JSON.stringify(payload)).toMatch(message)
      }

      const changed = yield* patch(`/v1/webhooks/${made.id}`, {
        url: "https://93.184.216.34/v2",
        eventTypes: ["ticket.status_changed"],
        active: false
      }, admin.token)
      expect(changed.status, changed.text).toBe(200)
      expect(decode(WebhookSubscription, changed)).toMatchObject({
        url: "https://93.184.216.34/v2",
        eventTypes: ["ticket.status_changed"],
        active: false,
        disabledAt: null
      })
      // The same values again change nothing and write no audit row.
      expect((yield* patch(`/v1/webhooks/${made.id}`, { active: false }, admin.token)).status).toBe(200)
      const audit = yield* auditRows(made.id)
      expect(audit.map((a) => a.action)).toEqual(["webhook.create", "webhook.update"])
      expect(audit[1]!.changes).toEqual({
        url: { from: PUBLIC_URL, to: "https://93.184.216.34/v2" },
        eventTypes: { from: ["ticket.created"], to: ["ticket.status_changed"] },
        active: { from: true, to: false }
      })

      const deleted = yield* call("DELETE", `/v1/webhooks/${made.id}`, { token: admin.token })
      expect(deleted.status).toBe(204)
      expect((yield* get(`/v1/webhooks/${made.id}`, admin.token)).status).toBe(404)
      expect((yield* call("DELETE", `/v1/webhooks/${made.id}`, { token: admin.token })).status).toBe(404)
      expect((yield* auditRows(made.id)).map((a) => a.action)).toEqual([
        "webhook.create",
        "webhook.update",
        "webhook.delete"
      ])
      const unknown = crypto.randomUUID()
      for (
        const r of [
          yield* get(`/v1/webhooks/${unknown}`, admin.token),
          yield* patch(`/v1/webhooks/${unknown}`, { active: true }, admin.token),
          yield* post(`/v1/webhooks/${unknown}/rotate-secret`, {}, admin.token),
          yield* post(`/v1/webhooks/${unknown}/test`, {}, admin.token),
          yield* get(`/v1/webhooks/${unknown}/deliveries`, admin.token)
        ]
      ) {
        expect(r.status).toBe(404)
        expect(r.body).toMatchObject({ _tag: "NotFound" })
      }
      expect((yield* get("/v1/webhooks/not-a-uuid", admin.token)).status).toBe(400)
    }))

  it.scoped("rotation shows the new secret once, keeps the old one for the overlap, and is audited without secrets", () =>
    Effect.gen(function*() {
      const { admin, subscription: made } = yield* withSubscription(PUBLIC_URL)
      const r = yield* post(`/v1/webhooks/${made.id}/rotate-secret`, { overlapSeconds: 3600 }, admin.token)
      expect(r.status, r.text).toBe(200)
      const rotated = decode(RotatedSecret, r)
      expect(rotated.secret).not.toBe(made.secret)
      const expires = Date.parse(rotated.previousSecretExpiresAt!)
      expect(expires - Date.now()).toBeGreaterThan(3500_000)
      expect(expires - Date.now()).toBeLessThanOrEqual(3600_000)
      const shown = decode(WebhookSubscription, yield* get(`/v1/webhooks/${made.id}`, admin.token))
      expect(shown.previousSecretExpiresAt).toBe(rotated.previousSecretExpiresAt)
      const sql = yield* SqlClient.SqlClient
      const [stored] = yield* sql<{ secret: string; previousSecret: string | null }>`
        SELECT secret, previous_secret FROM webhook_subscriptions WHERE id = ${made.id}`
      expect(stored).toEqual({ secret: rotated.secret, previousSecret: made.secret })

      const now = decode(
        RotatedSecret,
        yield* post(`/v1/webhooks/${made.id}/rotate-secret`, { overlapSeconds: 0 }, admin.token)
      )
      expect(now.previousSecretExpiresAt).toBeNull()
      const [after] = yield* sql<{ previousSecret: string | null }>`
        SELECT previous_secret FROM webhook_subscriptions WHERE id = ${made.id}`
      expect(after!.previousSecret).toBeNull()
      const bad = yield* post(`/v1/webhooks/${made.id}/rotate-secret`, { overlapSeconds: 604_801 }, admin.token)
      expect(bad.status).toBe(400)
      expect(bad.text).toMatch(/overlapSeconds must be an integer from 0 to 604800/)
      const audit = yield* auditRows(made.id)
      expect(audit.map((a) => a.action)).toEqual(["webhook.create", "webhook.secret_rotate", "webhook.secret_rotate"])
      expect(JSON.stringify(audit)).not.toMatch(/whsec_/)
    }))

  it.scoped("lists page by keyset with an active filter; the delivery log pages with attempts, a bad cursor is a 400", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const track = yield* trackSubscriptions
      const admin = yield* fx.user("admin")
      const ids: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const made = decode(
          CreatedWebhookSubscription,
          yield* post(
            "/v1/webhooks",
            { url: `${PUBLIC_URL}/${i}`, eventTypes: ["message.sent"], active: i !== 1 },
            admin.token
          )
        )
        track(made.id)
        ids.push(made.id)
      }
      const seen: Array<string> = []
      let cursor: string | null = null
      do {
        const page: typeof WebhookSubscriptionPage.Type = decode(
          WebhookSubscriptionPage,
          yield* get(`/v1/webhooks?limit=1${cursor === null ? "" : `&cursor=${cursor}`}`, admin.token)
        )
        for (const s of page.items) seen.push(s.id)
        cursor = page.nextCursor
      } while (cursor !== null && !ids.every((id) => seen.includes(id)))
      expect(seen.filter((id) => ids.includes(id))).toEqual([...ids].reverse())
      const inactive = decode(WebhookSubscriptionPage, yield* get("/v1/webhooks?active=false&limit=100", admin.token))
      expect(inactive.items.map((s) => s.id)).toContain(ids[1])
      expect(inactive.items.map((s) => s.id)).not.toContain(ids[0])

      // The log reads `deliveries` and `delivery_attempt_log` (the dispatcher writes them).
      const sql = yield* SqlClient.SqlClient
      const subscription = ids[0]!
      for (let i = 0; i < 3; i++) {
        yield* sql`WITH d AS (
            INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, subscription_id, payload, state,
              attempts, last_status, last_error)
            VALUES (${`test-${subscription}-${i}`}, 'webhook', ${crypto.randomUUID()}, 'message.sent', ${subscription},
              '{}'::json, 'failed', 2, 500, 'the receiver answered 500')
            RETURNING id
          )
          INSERT INTO delivery_attempt_log (delivery_id, outcome, status, error, duration_ms)
          SELECT id, o.outcome, 500, 'the receiver answered 500', 12 FROM d, (VALUES ('retry'), ('failed')) AS o(outcome)`
      }
      const first = decode(
        WebhookDeliveryPage,
        yield* get(`/v1/webhooks/${subscription}/deliveries?limit=2`, admin.token)
      )
      expect(first.items).toHaveLength(2)
      expect(first.items[0]).toMatchObject({
        idempotencyKey: `test-${subscription}-2`,
        state: "failed",
        attempts: 2,
        lastStatus: 500,
        nextAttemptAt: null
      })
      expect(first.items[0]!.attemptLog.map((a) => a.outcome)).toEqual(["retry", "failed"])
      expect(first.items[0]!.attemptLog[0]).toMatchObject({ status: 500, durationMs: 12 })
      const second = decode(
        WebhookDeliveryPage,
        yield* get(`/v1/webhooks/${subscription}/deliveries?limit=2&cursor=${first.nextCursor}`, admin.token)
      )
      expect(second.items.map((d) => d.idempotencyKey)).toEqual([`test-${subscription}-0`])
      expect(second.nextCursor).toBeNull()
      const delivered = decode(
        WebhookDeliveryPage,
        yield* get(`/v1/webhooks/${subscription}/deliveries?state=delivered`, admin.token)
      )
      expect(delivered.items).toEqual([])
      const badCursor = yield* get(`/v1/webhooks/${subscription}/deliveries?cursor=abc`, admin.token)
      expect(badCursor.status).toBe(400)
      expect(badCursor.body).toMatchObject({ _tag: "ValidationError", field: "cursor" })
      // Well-formed, but year 0: JavaScript takes it, PostgreSQL would not.
      const yearZero = Buffer.from("0000-01-01T00:00:00.000000Z|1").toString("base64url")
      const outOfRange = yield* get(`/v1/webhooks/${subscription}/deliveries?cursor=${yearZero}`, admin.token)
      expect(outOfRange.status).toBe(400)
      expect(outOfRange.body).toMatchObject({ _tag: "ValidationError", field: "cursor" })
    }))
})
