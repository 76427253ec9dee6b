/**
 * The webhook use cases, for admins only: subscriptions (their URL checked
 * against the address guard when set), secret rotation with an overlap,
 * the test-fire, and the delivery log.
 */
import { Effect, Option } from "effect"
import { createHash, randomUUID } from "node:crypto"
import type { Actor } from "../Auth/CurrentUser.js"
import { WebhookConfig } from "../Config.js"
import { ValidationError } from "../Kit/Errors.js"
import { DEFAULT_LIMIT, positionOf, toPage } from "../Kit/Pagination.js"
import { tracedFn } from "../Observability/Span.js"
import { webhookBody, WebhookPoster } from "./Channel.js"
import { decodeDeliveryCursor, encodeDeliveryCursor } from "./Cursor.js"
import type {
  CreatedWebhookSubscription,
  CreateWebhookRequest,
  ListDeliveriesParams,
  ListWebhooksParams,
  RotateSecretRequest,
  TestFireResult,
  UpdateWebhookRequest
} from "./Domain.js"
import { WebhookNotFound } from "./Errors.js"
import { canManageWebhooks } from "./Policy.js"
import { toDelivery, toSubscription, WebhooksRepo } from "./Repo.js"
import { generateSecret } from "./Signing.js"
import { checkUrl, HostResolver, SystemResolverLive } from "./Ssrf.js"

/** The event type of a test-fire: not a domain event, so no subscription receives it otherwise. */
export const TEST_EVENT_TYPE = "webhook.test"

export class Webhooks extends Effect.Service<Webhooks>()("OpsDesk/Webhooks/Webhooks", {
  effect: Effect.gen(function*() {
    const repo = yield* WebhooksRepo
    const poster = yield* WebhookPoster
    const resolver = yield* HostResolver
    const config = yield* WebhookConfig

    /** The URL as the guard normalizes it, or a 400 naming the rule it breaks. */
    const checkedUrl = (raw: string) =>
      checkUrl(raw, config.allowPrivate).pipe(
        Effect.provideService(HostResolver, resolver),
        Effect.map((checked) => checked.url.href),
        Effect.mapError((refused) => new ValidationError({ field: "url", message: refused.message }))
      )

    const found = (id: string) =>
      Effect.flatMap(
        repo.findById(id),
        Option.match({ onNone: () => Effect.fail(WebhookNotFound.of(id)), onSome: Effect.succeed })
      )

    const create = tracedFn("Webhooks.create")(function*(actor: Actor, payload: CreateWebhookRequest) {
      yield* canManageWebhooks(actor)
      const url = yield* checkedUrl(payload.url)
      const secret = payload.secret ?? generateSecret()
      const subscription = yield* repo.insert({
        url,
        eventTypes: payload.eventTypes,
        description: payload.description ?? "",
        active: payload.active ?? true,
        secret
      }, actor.id)
      const created: CreatedWebhookSubscription = { ...subscription, secret }
      return created
    })

    const list = tracedFn("Webhooks.list")(function*(actor: Actor, params: ListWebhooksParams) {
      yield* canManageWebhooks(actor)
      const after = yield* positionOf(params.cursor)
      const limit = params.limit ?? DEFAULT_LIMIT
      const rows = yield* repo.list({ active: params.active, after, limit })
      return toPage(rows, limit, toSubscription)
    })

    const get = tracedFn("Webhooks.get")(function*(actor: Actor, id: string) {
      yield* canManageWebhooks(actor)
      return yield* found(id)
    })

    const update = tracedFn("Webhooks.update")(function*(actor: Actor, id: string, payload: UpdateWebhookRequest) {
      yield* canManageWebhooks(actor)
      yield* found(id)
      const url = payload.url === undefined ? undefined : yield* checkedUrl(payload.url)
      return yield* repo.update(id, { ...payload, url }, actor.id)
    })

    const remove = tracedFn("Webhooks.remove")(function*(actor: Actor, id: string) {
      yield* canManageWebhooks(actor)
      const removed = yield* repo.remove(id, actor.id)
      if (!removed) return yield* Effect.fail(WebhookNotFound.of(id))
    })

    const rotateSecret = tracedFn("Webhooks.rotateSecret")(
      function*(actor: Actor, id: string, payload: RotateSecretRequest) {
        yield* canManageWebhooks(actor)
        const secret = payload.secret ?? generateSecret()
        const rotated = yield* repo.rotateSecret(
          id,
          secret,
          payload.overlapSeconds ?? config.secretOverlapSeconds,
          actor.id
        )
        if (Option.isNone(rotated)) return yield* Effect.fail(WebhookNotFound.of(id))
        return { secret, previousSecretExpiresAt: rotated.value?.toISOString() ?? null }
      }
    )

    /**
     * A signed `webhook.test` event, sent now through the same guard, signing
     * and timeout as every delivery, answered with how it went and recorded
     * in the subscription's delivery log. It is not retried and does not count
     * towards disabling: it is the admin's probe, also of a disabled subscription.
     */
    const test = tracedFn("Webhooks.test")(function*(actor: Actor, id: string) {
      yield* canManageWebhooks(actor)
      const target = yield* Effect.flatMap(
        repo.findTarget(id).pipe(Effect.orDie),
        Option.match({ onNone: () => Effect.fail(WebhookNotFound.of(id)), onSome: Effect.succeed })
      )
      const eventId = randomUUID()
      const envelope = {
        event: TEST_EVENT_TYPE,
        eventId,
        occurredAt: new Date().toISOString(),
        payload: { subscriptionId: id, message: "A test event sent from OpsDesk" }
      }
      const idempotencyKey = createHash("sha256").update(`${eventId}|webhook|${id}`).digest("hex")
      const attempt = yield* poster.attempt(target, idempotencyKey, webhookBody(envelope), 1)
      const outcome = attempt.outcome
      const delivered = outcome._tag === "Delivered"
      const status = outcome.status ?? null
      const error = outcome._tag === "Delivered" ? null : outcome.reason
      const deliveryId = yield* repo.recordTest({
        subscriptionId: id,
        eventId,
        idempotencyKey,
        payload: envelope,
        delivered,
        status,
        error,
        durationMs: attempt.durationMs
      })
      const result: TestFireResult = { deliveryId, delivered, status, error, durationMs: attempt.durationMs }
      return result
    })

    const deliveries = tracedFn("Webhooks.deliveries")(
      function*(actor: Actor, id: string, params: ListDeliveriesParams) {
        yield* canManageWebhooks(actor)
        const after = params.cursor === undefined ? undefined : decodeDeliveryCursor(params.cursor)
        if (after === null) {
          return yield* Effect.fail(new ValidationError({ field: "cursor", message: "cursor is not valid" }))
        }
        yield* found(id)
        const limit = params.limit ?? DEFAULT_LIMIT
        const rows = yield* repo.listDeliveries({ subscriptionId: id, state: params.state, after, limit })
        const more = rows.length > limit
        const page = more ? rows.slice(0, limit) : rows
        const last = page[page.length - 1]
        return {
          items: page.map(toDelivery),
          nextCursor: more && last !== undefined ? encodeDeliveryCursor({ ts: last.cursorTs, id: last.id }) : null
        }
      }
    )

    return { create, list, get, update, remove, rotateSecret, test, deliveries } as const
  }),
  dependencies: [WebhooksRepo.Default, WebhookPoster.Default, SystemResolverLive]
}) {}
