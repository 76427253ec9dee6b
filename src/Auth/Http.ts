/**
 * The Authentication middleware (bearer token → the caller, as the database
 * has them: Identity.ts) and the `auth` group: login, and logout everywhere.
 */
import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { apiOf } from "../Kit/Api.js"
import { traced } from "../Observability/Span.js"
import { Admissions } from "./Admissions.js"
import { AuthApi, Authentication } from "./Api.js"
import { CurrentUser } from "./CurrentUser.js"
import { InvalidCredentials, type PasswordChecksBusy, type TooManyAttempts, Unauthorized } from "./Errors.js"
import { Identity } from "./Identity.js"
import { LoginThrottle, LoginThrottleLive } from "./LoginThrottle.js"
import { hashPassword, needsRehash, PasswordHasher } from "./Password.js"
import { AuthRepo } from "./Repo.js"
import { Tokens, type TokenSubject } from "./Tokens.js"

const BEARER = /^bearer /i

/** 429s and 503s carry `Retry-After`, so clients need not parse the body. */
export const retryAfter = (e: TooManyAttempts | PasswordChecksBusy) =>
  HttpApp.appendPreResponseHandler((_request, response) =>
    Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(e.retryAfterSeconds)))
  )

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.gen(function*() {
    const tokens = yield* Tokens
    const identity = yield* Identity
    const admissions = yield* Admissions
    const missing = new Unauthorized({ message: "Missing bearer token" })
    const admit = (raw: string) => {
      const token = raw.trim()
      return Effect.flatMap(tokens.verify(token), (claims) => {
        const epoch = admissions.epochOf(claims.userId)
        return Effect.tap(identity.resolve(claims), (actor) => admissions.admit(token, actor.id, claims.exp, epoch))
      })
    }
    return Authentication.of({
      bearer: (token) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const header = request.headers.authorization
          return header === undefined || !BEARER.test(header) ? Effect.fail(missing) : admit(Redacted.value(token))
        })
    })
  })
).pipe(Layer.provide([Tokens.Default, Identity.Default, Admissions.Default]))

export const HttpAuthLive = HttpApiBuilder.group(apiOf(AuthApi), "auth", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* AuthRepo
    const tokens = yield* Tokens
    const identity = yield* Identity
    const throttle = yield* LoginThrottle
    const hasher = yield* PasswordHasher
    // Unknown usernames are checked against this hash, so both paths cost one hash.
    const dummyHash = yield* hashPassword("opsdesk-dummy-password-for-timing")
    const rejected = new InvalidCredentials({ message: "Invalid username or password" })

    /** An older hash is replaced by today's once its password is known; a failure here never fails the login. */
    const upgrade = (userId: string, previous: string, password: string) =>
      hasher.hash(password).pipe(
        Effect.flatMap((next) => repo.upgradeHash(userId, previous, next)),
        Effect.catchAllCause((cause) => Effect.logWarning("Could not upgrade a password hash", cause))
      )

    /** The user if the password is theirs; None for a wrong password, an unknown username or a deactivated user. */
    const authenticate = (username: string, password: string, client: string) =>
      repo.findCredentials(username).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.as(hasher.verify(password, dummyHash, client), Option.none<TokenSubject>()),
          onSome: (user) =>
            Effect.flatMap(
              hasher.verify(password, user.passwordHash, client),
              (ok) =>
                ok
                  ? Effect.as(
                    needsRehash(user.passwordHash) ? upgrade(user.id, user.passwordHash, password) : Effect.void,
                    Option.some<TokenSubject>({
                      id: user.id,
                      username: user.username,
                      role: user.role,
                      tokenVersion: user.tokenVersion
                    })
                  )
                  : Effect.succeed(Option.none<TokenSubject>())
            )
        }))
      )

    return handlers
      .handle("logout", () =>
        Effect.gen(function*() {
          const actor = yield* CurrentUser
          yield* repo.logoutEverywhere(actor.id)
          yield* identity.forget(actor.id)
        }).pipe(traced("Auth.logout")))
      .handle("login", ({ payload }) =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const attempt = { username: payload.username, ip: Option.getOrUndefined(request.remoteAddress) }
          const admitted = yield* throttle.begin(attempt).pipe(Effect.tapError(retryAfter))
          // Admitted attempts count as failures until they succeed; one that gets no answer on the password
          // (a 503, no room to check it, a disconnect) is taken back.
          const user = yield* (Duration.isZero(admitted.delay) ? Effect.void : Effect.sleep(admitted.delay)).pipe(
            Effect.zipRight(authenticate(payload.username, payload.password, admitted.client)),
            Effect.tapError(retryAfter),
            Effect.onExit(Exit.match({
              onFailure: () => admitted.abandoned,
              onSuccess: (found) => (Option.isSome(found) ? admitted.succeeded : Effect.void)
            }))
          )
          if (Option.isNone(user)) return yield* Effect.fail(rejected)
          return yield* tokens.issue(user.value)
        }).pipe(traced("Auth.login")))
  })).pipe(
    Layer.provide([AuthRepo.Default, Tokens.Default, Identity.Default, LoginThrottleLive, PasswordHasher.Default])
  )
