import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { apiOf } from "../Kit/Api.js"
import { WebhooksApi } from "./Api.js"
import { Webhooks } from "./Webhooks.js"

export const HttpWebhooksLive = HttpApiBuilder.group(
  apiOf(WebhooksApi),
  "webhooks",
  (handlers) =>
    Effect.gen(function*() {
      const webhooks = yield* Webhooks
      return handlers
        .handle(
          "createWebhook",
          ({ payload }) => Effect.flatMap(CurrentUser, (actor) => webhooks.create(actor, payload))
        )
        .handle(
          "listWebhooks",
          ({ urlParams }) => Effect.flatMap(CurrentUser, (actor) => webhooks.list(actor, urlParams))
        )
        .handle("getWebhook", ({ path }) => Effect.flatMap(CurrentUser, (actor) => webhooks.get(actor, path.id)))
        .handle(
          "updateWebhook",
          ({ path, payload }) => Effect.flatMap(CurrentUser, (actor) => webhooks.update(actor, path.id, payload))
        )
        .handle("deleteWebhook", ({ path }) => Effect.flatMap(CurrentUser, (actor) => webhooks.remove(actor, path.id)))
        .handle(
          "rotateWebhookSecret",
          ({ path, payload }) => Effect.flatMap(CurrentUser, (actor) => webhooks.rotateSecret(actor, path.id, payload))
        )
        .handle("testWebhook", ({ path }) => Effect.flatMap(CurrentUser, (actor) => webhooks.test(actor, path.id)))
        .handle(
          "listWebhookDeliveries",
          ({ path, urlParams }) =>
            Effect.flatMap(CurrentUser, (actor) => webhooks.deliveries(actor, path.id, urlParams))
        )
    })
).pipe(Layer.provide(Webhooks.Default))
