import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { Unauthorized } from "../Auth/Errors.js"
import { hashPassword } from "../Auth/Password.js"
import { apiOf } from "../Kit/Api.js"
import { UsersApi } from "./Api.js"
import { canCreateUser } from "./Policy.js"
import { UsersRepo } from "./Repo.js"

export const HttpUsersLive = HttpApiBuilder.group(apiOf(UsersApi), "users", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* UsersRepo
    return handlers
      .handle("createUser", ({ payload }) =>
        Effect.gen(function*() {
          const actor = yield* CurrentUser
          yield* canCreateUser(actor)
          const passwordHash = yield* hashPassword(payload.password)
          return yield* repo.insert({ username: payload.username, passwordHash, role: payload.role }, actor.id)
        }).pipe(Effect.withSpan("Users.create")))
      .handle("getMe", () =>
        CurrentUser.pipe(
          Effect.flatMap((actor) => repo.findById(actor.id)),
          // A valid token for a user deleted since it was issued.
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new Unauthorized({ message: "the user of this token no longer exists" })),
            onSome: Effect.succeed
          }))
        ))
  })).pipe(Layer.provide(UsersRepo.Default))
