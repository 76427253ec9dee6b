import { HttpApiBuilder, HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { retryAfter } from "../Auth/Http.js"
import { apiOf } from "../Kit/Api.js"
import { UsersApi } from "./Api.js"
import { UserPreferences } from "./Preferences.js"
import { Users } from "./Users.js"

export const HttpUsersLive = HttpApiBuilder.group(apiOf(UsersApi), "users", (handlers) =>
  Effect.gen(function*() {
    const users = yield* Users
    const preferences = yield* UserPreferences
    return handlers
      .handle("createUser", ({ payload }) => Effect.flatMap(CurrentUser, (actor) => users.create(actor, payload)))
      .handle("listUsers", ({ urlParams }) => Effect.flatMap(CurrentUser, (actor) => users.list(actor, urlParams)))
      .handle("getMe", () => Effect.flatMap(CurrentUser, users.me))
      .handle("updateMe", ({ payload }) => Effect.flatMap(CurrentUser, (actor) => users.updateMe(actor, payload)))
      .handle("getMyPreferences", () => Effect.flatMap(CurrentUser, (actor) => preferences.get(actor.id)))
      .handle(
        "updateMyPreferences",
        ({ payload }) => Effect.flatMap(CurrentUser, (actor) => preferences.update(actor.id, payload))
      )
      .handle("changeMyPassword", ({ payload }) =>
        Effect.gen(function*() {
          const actor = yield* CurrentUser
          const request = yield* HttpServerRequest.HttpServerRequest
          return yield* users.changeOwnPassword(
            actor,
            Option.getOrUndefined(request.remoteAddress),
            payload.currentPassword,
            payload.newPassword
          )
        }).pipe(
          Effect.tapErrorTag("TooManyAttempts", retryAfter),
          Effect.tapErrorTag("ServiceUnavailable", retryAfter)
        ))
      .handle("getUser", ({ path }) => Effect.flatMap(CurrentUser, (actor) => users.get(actor, path.id)))
      .handle(
        "changeRole",
        ({ path, payload }) => Effect.flatMap(CurrentUser, (actor) => users.changeRole(actor, path.id, payload.role))
      )
      .handle("deactivateUser", ({ path }) => Effect.flatMap(CurrentUser, (actor) => users.deactivate(actor, path.id)))
      .handle("reactivateUser", ({ path }) => Effect.flatMap(CurrentUser, (actor) => users.reactivate(actor, path.id)))
      .handle(
        "resetPassword",
        ({ path, payload }) =>
          Effect.flatMap(CurrentUser, (actor) => users.resetPassword(actor, path.id, payload.password))
      )
  })).pipe(Layer.provide([Users.Default, UserPreferences.Default]))
