import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Exit, Layer, Option, Redacted } from "effect"
import { apiOf } from "../Kit/Api.js"
import { AuthApi, Authentication } from "./Api.js"
import type { Actor } from "./CurrentUser.js"
import { InvalidCredentials, type TooManyAttempts, Unauthorized } from "./Errors.js"
import { LoginThrottle, LoginThrottleLive } from "./LoginThrottle.js"
import { hashPassword, verifyPassword } from "./Password.js"
import { AuthRepo } from "./Repo.js"
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
          return header === undefined || !BEARER.test(header)
            ? Effect.fail(missing)
            : tokens.verify(Redacted.value(token).trim())
        })
    })
  })
).pipe(Layer.provide(Tokens.Default))

export const HttpAuthLive = HttpApiBuilder.group(apiOf(AuthApi), "auth", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* AuthRepo
    const tokens = yield* Tokens
    const throttle = yield* LoginThrottle
    // Unknown usernames are checked against this hash, so both paths cost one scrypt.
    const dummyHash = yield* hashPassword("opsdesk-dummy-password-for-timing")
    const rejected = new InvalidCredentials({ message: "Invalid username or password" })

    /** The user if the password is theirs; None for a wrong password or an unknown username. */
    const authenticate = (username: string, password: string) =>
      repo.findCredentials(username).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.as(verifyPassword(password, dummyHash), Option.none<Actor>()),
          onSome: (user) =>
            Effect.map(
              verifyPassword(password, user.passwordHash),
              (ok) =>
                ok
                  ? Option.some<Actor>({ id: user.id, username: user.username, role: user.role })
                  : Option.none<Actor>()
            )
        }))
      )

    /** 429s carry `Retry-After`, so clients need not parse the body. */
    const retryAfter = (e: TooManyAttempts) =>
      HttpApp.appendPreResponseHandler((_request, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(e.retryAfterSeconds)))
      )

    return handlers.handle("login", ({ payload }) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const attempt = { username: payload.username, ip: Option.getOrUndefined(request.remoteAddress) }
        const admitted = yield* throttle.begin(attempt).pipe(Effect.tapError(retryAfter))
        // Admitted attempts count as failures until they succeed; one that dies (a 503) is taken back.
        const user = yield* authenticate(payload.username, payload.password).pipe(
          Effect.onExit(Exit.match({
            onFailure: () => admitted.abandoned,
            onSuccess: (found) => (Option.isSome(found) ? admitted.succeeded : Effect.void)
          }))
        )
        if (Option.isNone(user)) return yield* Effect.fail(rejected)
        return yield* tokens.issue(user.value)
      }).pipe(Effect.withSpan("Auth.login")))
  })).pipe(Layer.provide([AuthRepo.Default, Tokens.Default, LoginThrottleLive]))
