import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { apiOf } from "../Kit/Api.js"
import { MessagesApi } from "./Api.js"
import { Messages } from "./Messages.js"

export const HttpMessagesLive = HttpApiBuilder.group(
  apiOf(MessagesApi),
  "messages",
  (handlers) =>
    Effect.gen(function*() {
      const messages = yield* Messages
      return handlers
        .handle("sendMessage", ({ payload }) => Effect.flatMap(CurrentUser, (actor) => messages.send(actor, payload)))
        .handle(
          "listMessages",
          ({ path, urlParams }) => Effect.flatMap(CurrentUser, (actor) => messages.list(actor, path.id, urlParams))
        )
    })
).pipe(Layer.provide(Messages.Default))
