/** Webhook subscriptions and their deliveries as the API shows them, and the requests about them. */
import { Schema } from "effect"
import { EVENT_NAMES } from "../Domain/Events.js"
import { Cursor, Limit } from "../Kit/Pagination.js"
import { StorableText, Timestamp } from "../Kit/Schemas.js"
import { secretProblem } from "./Signing.js"
import { MAX_URL_LENGTH } from "./Ssrf.js"

export const WebhookEventType = Schema.Literal(...EVENT_NAMES).annotations({
  message: () => ({ message: `unknown event type: expected one of ${EVENT_NAMES.join(", ")}`, override: true })
})
export type WebhookEventType = typeof WebhookEventType.Type

/** Its form and its addresses are checked by the service (Ssrf.ts), which knows WEBHOOK_ALLOW_PRIVATE. */
export const WebhookUrl = Schema.String.pipe(
  Schema.maxLength(MAX_URL_LENGTH, { message: () => `url must be at most ${MAX_URL_LENGTH} characters long` })
).annotations({
  description: "https URL the events are POSTed to; a public address unless WEBHOOK_ALLOW_PRIVATE lists it"
})

export const EventTypes = Schema.Array(WebhookEventType).pipe(
  Schema.minItems(1, { message: () => "eventTypes must name at least one event type" }),
  Schema.filter((types) => new Set(types).size === types.length, {
    message: () => "eventTypes must not repeat an event type"
  })
)

export const Description = StorableText.pipe(
  Schema.maxLength(500, { message: () => "description must be at most 500 characters long" })
)

/** A secret a caller brings; its messages never quote it. */
export const WebhookSecret = Schema.String.annotations({ message: () => "secret must be a string" }).pipe(
  Schema.filter((s) => secretProblem(s) ?? true)
).annotations({
  description: "`whsec_` + base64 of 24 to 64 random bytes (Standard Webhooks); generated when left out"
})

/** Seven days: long enough for any receiver's deployment, short enough that a leaked old secret dies. */
export const MAX_OVERLAP_SECONDS = 604_800

export const WebhookSubscription = Schema.Struct({
  id: Schema.UUID,
  url: Schema.String,
  eventTypes: Schema.Array(WebhookEventType),
  description: Schema.String,
  active: Schema.Boolean.annotations({ description: "Only active subscriptions receive events" }),
  consecutiveFailures: Schema.Int.annotations({ description: "Failed attempts in a row; a success resets it" }),
  disabledAt: Schema.NullOr(Timestamp).annotations({
    description: "When OpsDesk disabled it (too many failures in a row, or the receiver answered 410 Gone)"
  }),
  disabledReason: Schema.NullOr(Schema.String),
  previousSecretExpiresAt: Schema.NullOr(Timestamp).annotations({
    description: "Until then, deliveries are also signed with the secret before the last rotation"
  }),
  createdAt: Timestamp,
  updatedAt: Timestamp
}).annotations({ identifier: "WebhookSubscription" })
export type WebhookSubscription = typeof WebhookSubscription.Type

export const CreatedWebhookSubscription = Schema.Struct({
  ...WebhookSubscription.fields,
  secret: Schema.String.annotations({ description: "The signing secret. Shown this once: store it now" })
}).annotations({ identifier: "CreatedWebhookSubscription" })
export type CreatedWebhookSubscription = typeof CreatedWebhookSubscription.Type

export const WebhookSubscriptionPage = Schema.Struct({
  items: Schema.Array(WebhookSubscription),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "WebhookSubscriptionPage" })

export const CreateWebhookRequest = Schema.Struct({
  url: WebhookUrl,
  eventTypes: EventTypes,
  description: Schema.optional(Description),
  active: Schema.optional(Schema.Boolean),
  // Exact: an optional property's `| undefined` branch would quote a refused secret back ("actual …").
  secret: Schema.optionalWith(WebhookSecret, { exact: true })
}).annotations({ identifier: "CreateWebhookRequest" })
export type CreateWebhookRequest = typeof CreateWebhookRequest.Type

export const UpdateWebhookRequest = Schema.Struct({
  url: Schema.optional(WebhookUrl),
  eventTypes: Schema.optional(EventTypes),
  description: Schema.optional(Description),
  active: Schema.optional(Schema.Boolean.annotations({
    description: "`true` re-enables a disabled subscription and resets its failure count"
  }))
}).pipe(
  Schema.filter(
    (p) => p.url !== undefined || p.eventTypes !== undefined || p.description !== undefined || p.active !== undefined,
    { message: () => "at least one of url, eventTypes, description, active is required" }
  )
).annotations({ identifier: "UpdateWebhookRequest" })
export type UpdateWebhookRequest = typeof UpdateWebhookRequest.Type

export const RotateSecretRequest = Schema.Struct({
  overlapSeconds: Schema.optional(
    Schema.Int.pipe(
      Schema.between(0, MAX_OVERLAP_SECONDS, {
        message: () => `overlapSeconds must be an integer from 0 to ${MAX_OVERLAP_SECONDS}`
      })
    ).annotations({
      description:
        "How long the current secret keeps signing next to the new one (default WEBHOOK_SECRET_OVERLAP_SECONDS); 0 ends it now (a leaked secret)"
    })
  ),
  secret: Schema.optionalWith(WebhookSecret, { exact: true })
}).annotations({ identifier: "RotateSecretRequest" })
export type RotateSecretRequest = typeof RotateSecretRequest.Type

export const RotatedSecret = Schema.Struct({
  secret: Schema.String.annotations({ description: "The new signing secret. Shown this once: store it now" }),
  previousSecretExpiresAt: Schema.NullOr(Timestamp)
}).annotations({ identifier: "RotatedSecret" })

export const TestFireResult = Schema.Struct({
  deliveryId: Schema.String,
  delivered: Schema.Boolean,
  status: Schema.NullOr(Schema.Int).annotations({ description: "The receiver's HTTP status; null when none came" }),
  error: Schema.NullOr(Schema.String),
  durationMs: Schema.Int
}).annotations({ identifier: "WebhookTestResult" })
export type TestFireResult = typeof TestFireResult.Type

export const DeliveryState = Schema.Literal("pending", "delivered", "failed")

export const DeliveryAttempt = Schema.Struct({
  attemptedAt: Timestamp,
  outcome: Schema.Literal("delivered", "retry", "failed"),
  status: Schema.NullOr(Schema.Int),
  error: Schema.NullOr(Schema.String),
  durationMs: Schema.Int
}).annotations({ identifier: "WebhookDeliveryAttempt" })

export const WebhookDelivery = Schema.Struct({
  id: Schema.String,
  eventId: Schema.String,
  eventType: Schema.String,
  idempotencyKey: Schema.String.annotations({ description: "The `webhook-id` header of every attempt" }),
  state: DeliveryState,
  attempts: Schema.Int,
  lastStatus: Schema.NullOr(Schema.Int),
  lastError: Schema.NullOr(Schema.String),
  nextAttemptAt: Schema.NullOr(Timestamp).annotations({ description: "When a pending delivery is tried next" }),
  createdAt: Timestamp,
  deliveredAt: Schema.NullOr(Timestamp),
  attemptLog: Schema.Array(DeliveryAttempt).annotations({ description: "Its attempts, oldest first (at most 50)" })
}).annotations({ identifier: "WebhookDelivery" })
export type WebhookDelivery = typeof WebhookDelivery.Type

export const WebhookDeliveryPage = Schema.Struct({
  items: Schema.Array(WebhookDelivery),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "WebhookDeliveryPage" })

export const ListWebhooksParams = Schema.Struct({
  active: Schema.optional(Schema.BooleanFromString.annotations({ description: "`true` or `false`" })),
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListWebhooksParams = typeof ListWebhooksParams.Type

export const ListDeliveriesParams = Schema.Struct({
  state: Schema.optional(DeliveryState),
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListDeliveriesParams = typeof ListDeliveriesParams.Type

export const WebhookIdPath = Schema.Struct({ id: Schema.UUID })
