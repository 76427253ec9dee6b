/**
 * The webhook channel: what the dispatcher (src/Notifications/Dispatcher.ts)
 * calls to try one webhook delivery once (`WebhookSender`), and the test-fire.
 *
 * Each attempt reads its subscription (a deleted or disabled one is a
 * permanent failure, sent nowhere), checks the URL's addresses again
 * (Ssrf.ts) and connects only to those, signs the body with every live
 * secret (Signing.ts), and classifies the answer: 2xx delivered; a redirect
 * is not followed and fails for good, with where it pointed; 410 Gone fails
 * for good and disables the subscription (the Standard Webhooks convention);
 * any other status, a timeout or a network error is worth a retry. Every
 * failed attempt counts towards `WEBHOOK_DISABLE_AFTER` in a row, every
 * delivered one resets the count.
 */
import { Effect, Layer, Option } from "effect"
import { WebhookConfig } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import {
  ATTEMPT_HEADER,
  Delivered,
  type DeliveryJob,
  type DeliveryOutcome,
  Permanent,
  Retryable,
  WebhookSender
} from "../Notifications/Channel.js"
import { traced } from "../Observability/Span.js"
import { type DeliveryTarget, WebhooksRepo } from "./Repo.js"
import { post, type SendResult } from "./Send.js"
import { signedHeaders } from "./Signing.js"
import { checkUrl, HostResolver, SystemResolverLive } from "./Ssrf.js"

/** What a webhook's body is made of: the event envelope, as the outbox and the broker carry it. */
interface Envelope {
  readonly event: string
  readonly eventId: string
  readonly occurredAt: string
  readonly payload: unknown
}

const isEnvelope = (u: unknown): u is Envelope =>
  typeof u === "object" && u !== null && typeof (u as Envelope).event === "string" &&
  typeof (u as Envelope).eventId === "string" && typeof (u as Envelope).occurredAt === "string" &&
  "payload" in u

/**
 * The body, in the Standard Webhooks payload shape: `type` (the event's name),
 * `timestamp` (when it happened), `data` (its payload), plus its `eventId`
 * (one event reaches each subscription under its own `webhook-id`).
 */
export const webhookBody = (envelope: Envelope): string =>
  JSON.stringify({
    type: envelope.event,
    timestamp: envelope.occurredAt,
    eventId: envelope.eventId,
    data: envelope.payload
  })

/** One attempt's result, for the dispatcher's record or the test-fire's answer. */
export interface Attempt {
  readonly outcome: DeliveryOutcome
  readonly durationMs: number
  /** Whether it counts against the subscription (false: nothing was tried, e.g. it was disabled). */
  readonly counts: boolean
  /** The receiver answered 410 Gone. */
  readonly gone: boolean
}

const classify = (result: SendResult): Pick<Attempt, "outcome" | "gone"> => {
  if (result._tag === "NoAnswer") return { outcome: Retryable(result.reason), gone: false }
  const { location, snippet, status } = result
  const said = snippet.trim() === "" ? "" : `: ${snippet.trim().replace(/\s+/g, " ").slice(0, 200)}`
  if (status >= 200 && status < 300) return { outcome: Delivered({ status }), gone: false }
  if (status >= 300 && status < 400) {
    return {
      outcome: Permanent(
        `the receiver redirected (${status}${location === undefined ? "" : ` to ${location.slice(0, 300)}`}); ` +
          "redirects are not followed: point the subscription at the final URL",
        status
      ),
      gone: false
    }
  }
  if (status === 410) {
    return { outcome: Permanent("the receiver answered 410 Gone: the subscription is disabled", status), gone: true }
  }
  return { outcome: Retryable(`the receiver answered ${status}${said}`, status), gone: false }
}

export class WebhookPoster extends Effect.Service<WebhookPoster>()("OpsDesk/Webhooks/Poster", {
  effect: Effect.gen(function*() {
    const config = yield* WebhookConfig
    const resolver = yield* HostResolver

    /** Checks the URL's addresses now, signs, sends once (try number `tryNumber`), classifies. Never fails. */
    const attempt = (
      target: DeliveryTarget,
      webhookId: string,
      body: string,
      tryNumber: number
    ): Effect.Effect<Attempt> =>
      Effect.gen(function*() {
        const started = Date.now()
        const checked = yield* checkUrl(target.url, config.allowPrivate).pipe(
          Effect.provideService(HostResolver, resolver),
          Effect.either
        )
        if (checked._tag === "Left") {
          const refused = checked.left
          const reason = `not sent: ${refused.message}`
          return {
            // A host that does not resolve may come back; one that resolves where it must not will not.
            outcome: refused.reason === "Unresolvable" ? Retryable(reason) : Permanent(reason),
            durationMs: Date.now() - started,
            counts: true,
            gone: false
          }
        }
        const headers = {
          ...signedHeaders(target.secrets, webhookId, new Date(), body),
          [ATTEMPT_HEADER.toLowerCase()]: String(tryNumber)
        }
        const result = yield* post(checked.right, headers, body, config.timeout)
        return { ...classify(result), durationMs: Date.now() - started, counts: true }
      }).pipe(traced("WebhookPoster.attempt"))

    return { attempt } as const
  }),
  dependencies: [SystemResolverLive]
}) {}

/**
 * The dispatcher's webhook sender. Database trouble while reading the
 * subscription is a retry; while counting the outcome, a logged warning (the
 * delivery itself happened, or not, either way).
 */
export const WebhookSenderWithoutDependencies = Layer.effect(
  WebhookSender,
  Effect.gen(function*() {
    const repo = yield* WebhooksRepo
    const poster = yield* WebhookPoster
    const { disableAfter } = yield* WebhookConfig

    const count = (job: DeliveryJob, attempt: Attempt) => {
      if (!attempt.counts || job.subscriptionId === null) return Effect.void
      const id = job.subscriptionId
      const recorded = attempt.outcome._tag === "Delivered"
        ? repo.recordSuccess(id)
        : repo.recordFailure(id, attempt.outcome.reason, disableAfter, attempt.gone).pipe(
          Effect.tap((disabled) =>
            disabled
              ? Effect.logWarning(
                `Webhook subscription ${id} disabled: ${
                  attempt.outcome._tag !== "Delivered" ? attempt.outcome.reason : ""
                }`
              )
              : Effect.void
          )
        )
      return recorded.pipe(
        Effect.catchAllCause((cause) =>
          Effect.logWarning(`Could not count a webhook attempt for subscription ${id}`, cause)
        )
      )
    }

    const deliver = (job: DeliveryJob): Effect.Effect<DeliveryOutcome> =>
      Effect.gen(function*() {
        if (job.subscriptionId === null) return Permanent("the webhook subscription was deleted")
        if (!isEnvelope(job.payload)) return Permanent("the delivery's payload is not an event envelope")
        const found = yield* repo.findTarget(job.subscriptionId).pipe(Effect.either)
        if (found._tag === "Left") return Retryable(`cannot read the subscription: ${describe(found.left)}`)
        if (Option.isNone(found.right)) return Permanent("the webhook subscription was deleted")
        const target = found.right.value
        if (!target.active) {
          return Permanent(
            `the webhook subscription is disabled${target.disabledReason === null ? "" : ` (${target.disabledReason})`}`
          )
        }
        const attempt = yield* poster.attempt(target, job.idempotencyKey, webhookBody(job.payload), job.attempt)
        yield* count(job, attempt)
        return attempt.outcome
      }).pipe(
        traced("WebhookSender.deliver", {
          attributes: { deliveryId: job.id, subscriptionId: job.subscriptionId ?? "", attempt: job.attempt }
        })
      )

    return WebhookSender.of({ deliver })
  })
)

/** The sender with its repository and poster (the system resolver); needs SqlClient. */
export const WebhookSenderLive = WebhookSenderWithoutDependencies.pipe(
  Layer.provide([WebhooksRepo.Default, WebhookPoster.Default])
)
