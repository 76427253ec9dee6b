import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Forbidden, ValidationError } from "../Kit/Errors.js"
import {
  CreatedWebhookSubscription,
  CreateWebhookRequest,
  ListDeliveriesParams,
  ListWebhooksParams,
  RotatedSecret,
  RotateSecretRequest,
  TestFireResult,
  UpdateWebhookRequest,
  WebhookDeliveryPage,
  WebhookIdPath,
  WebhookSubscription,
  WebhookSubscriptionPage
} from "./Domain.js"
import { WebhookNotFound } from "./Errors.js"

const URL_RULES =
  "The URL must be https and its host must resolve only to public addresses, unless WEBHOOK_ALLOW_PRIVATE lists it: " +
  "otherwise 400 `ValidationError` (`field: \"url\"`) says which rule it breaks"

export class WebhooksApi extends HttpApiGroup.make("webhooks")
  .annotate(
    OpenApi.Description,
    "Webhook subscriptions (admins): signed deliveries of domain events, in the Standard Webhooks format."
  )
  .add(
    HttpApiEndpoint.post("createWebhook", "/")
      .setPayload(CreateWebhookRequest)
      .addSuccess(CreatedWebhookSubscription, { status: 201 })
      .addError(Forbidden, { status: 403 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Subscribe a URL to event types (admin only); the answer shows the secret, once")
      .annotate(OpenApi.Description, URL_RULES)
  )
  .add(
    HttpApiEndpoint.get("listWebhooks", "/")
      .annotate(
        OpenApi.Description,
        "Admins only. Secrets are never listed; a subscription OpsDesk disabled after failures shows when and why."
      )
      .setUrlParams(ListWebhooksParams)
      .addSuccess(WebhookSubscriptionPage)
      .addError(Forbidden, { status: 403 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Webhook subscriptions, newest first, keyset-paginated; filter `active` (admin only)")
  )
  .add(
    HttpApiEndpoint.get("getWebhook", "/:id")
      .annotate(
        OpenApi.Description,
        "Admins only; 404 for an unknown id. The secret is shown only when it is created or rotated."
      )
      .setPath(WebhookIdPath)
      .addSuccess(WebhookSubscription)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "A webhook subscription, without its secret (admin only)")
  )
  .add(
    HttpApiEndpoint.patch("updateWebhook", "/:id")
      .setPath(WebhookIdPath)
      .setPayload(UpdateWebhookRequest)
      .addSuccess(WebhookSubscription)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Change a subscription's URL, event types, description or active flag (admin only)")
      .annotate(
        OpenApi.Description,
        `${URL_RULES}. \`active: true\` re-enables a subscription OpsDesk disabled and resets its failure count`
      )
  )
  .add(
    HttpApiEndpoint.del("deleteWebhook", "/:id")
      .annotate(
        OpenApi.Description,
        "Admins only. Deliveries still pending for it fail with the reason \"subscription was deleted\"."
      )
      .setPath(WebhookIdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Delete a subscription (admin only); its pending deliveries fail")
  )
  .add(
    HttpApiEndpoint.post("rotateWebhookSecret", "/:id/rotate-secret")
      .setPath(WebhookIdPath)
      .setPayload(RotateSecretRequest)
      .addSuccess(RotatedSecret)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Replace the signing secret (admin only); the answer shows the new one, once")
      .annotate(
        OpenApi.Description,
        "Until `previousSecretExpiresAt`, deliveries carry two signatures (new and previous secret), so a receiver can switch at its own pace"
      )
  )
  .add(
    HttpApiEndpoint.post("testWebhook", "/:id/test")
      .setPath(WebhookIdPath)
      .addSuccess(TestFireResult)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .annotate(
        OpenApi.Summary,
        "Send a signed `webhook.test` event now and answer how the receiver took it (admin only)"
      )
      .annotate(
        OpenApi.Description,
        "Also for an inactive subscription. Recorded in its delivery log; never retried, and it does not count towards disabling"
      )
  )
  .add(
    HttpApiEndpoint.get("listWebhookDeliveries", "/:id/deliveries")
      .annotate(
        OpenApi.Description,
        "Admins only. Each delivery (one per event and subscription) with its state and every attempt: time, outcome, HTTP status or error, duration."
      )
      .setPath(WebhookIdPath)
      .setUrlParams(ListDeliveriesParams)
      .addSuccess(WebhookDeliveryPage)
      .addError(Forbidden, { status: 403 })
      .addError(WebhookNotFound, { status: 404 })
      .addError(ValidationError, { status: 400 })
      .annotate(
        OpenApi.Summary,
        "A subscription's deliveries with their attempts, newest first, keyset-paginated (admin only)"
      )
  )
  .middleware(Authentication)
  .prefix("/v1/webhooks")
{}
