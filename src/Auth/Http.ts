import { HttpApiBuilder, HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Option, Redacted } from "effect"
import { Api } from "../Http/Api.js"
import { Unauthorized } from "../Http/Errors.js"
import { UsersRepo } from "../Users/Repo.js"
import { Authentication } from "./Api.js"
import { hashPassword, verifyPassword } from "./Password.js"
import { Tokens } from "./Tokens.js"

const BEARER = /^bearer /i

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.gen(function*() {
    const tokens = yield* Tokens
    const missing = new Unauthorized({ message: "Missing bearer token" })
    return Authentication.of({
      bearer: (token) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const header = request.headers.authorization
          return header === undefined || !BEARER.test(header) ? Effect.fail(missing) : tokens.verify(Redacted.value(token).trim())
        })
    })
  })
).pipe(Layer.provide(Tokens.Default))

export const HttpAuthLive = HttpApiBuilder.group(Api, "auth", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* UsersRepo
    const tokens = yield* Tokens
    // Unknown usernames are checked against this hash, so both paths cost one scrypt.
    const dummyHash = yield* hashPassword("opsdesk-dummy-password-for-timing")
    const rejected = new Unauthorized({ message: "Invalid username or password" })
    return handlers.handle("login", ({ payload }) =>
      repo.findCredentials(payload.username).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.zipRight(verifyPassword(payload.password, dummyHash), Effect.fail(rejected)),
          onSome: (user) =>
            verifyPassword(payload.password, user.passwordHash).pipe(
              Effect.flatMap((ok) =>
                ok ? tokens.issue({ id: user.id, username: user.username, role: user.role }) : Effect.fail(rejected)
              )
            )
        })),
        Effect.withSpan("Auth.login")
      ))
  })).pipe(Layer.provide([UsersRepo.Default, Tokens.Default]))
