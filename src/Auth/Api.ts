/**
 * Authentication: the public login endpoint (its group has no bearer
 * middleware; logout, the one endpoint here that needs a token, carries it
 * itself) and the bearer middleware every other group uses.
 */
import {
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import { Schema } from "effect"
import { SecretString, StorableText } from "../Kit/Schemas.js"
import { CurrentUser } from "./CurrentUser.js"
import { InvalidCredentials, PasswordChecksBusy, TooManyAttempts, Unauthorized } from "./Errors.js"

/**
 * Every endpoint behind this middleware may answer 401: a refused token, or a
 * token whose user no longer exists, is deactivated, or has ended the token's
 * sessions since (src/Auth/Identity.ts).
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("OpsDesk/Auth/Authentication", {
  failure: Unauthorized.annotations(HttpApiSchema.annotations({ status: 401 })),
  provides: CurrentUser,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

export const LoginRequest = Schema.Struct({
  username: StorableText.pipe(Schema.minLength(1), Schema.maxLength(64)),
  password: SecretString("password", 1, 200)
})

export const LoginResponse = Schema.Struct({
  accessToken: Schema.String,
  tokenType: Schema.Literal("Bearer"),
  expiresIn: Schema.Int.annotations({ description: "Seconds until the token expires" })
}).annotations({
  examples: [{
    accessToken: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    tokenType: "Bearer",
    expiresIn: 3600
  }]
})

export class AuthApi extends HttpApiGroup.make("auth")
  .annotate(
    OpenApi.Description,
    "Log in for a bearer token (JWT, HS256), and log out everywhere. Failed logins are throttled per (user, client)."
  )
  .add(
    HttpApiEndpoint.post("login", "/login")
      .setPayload(LoginRequest)
      .addSuccess(LoginResponse)
      .addError(InvalidCredentials, { status: 401 })
      .addError(TooManyAttempts, { status: 429 })
      .addError(PasswordChecksBusy, { status: 503 })
      .annotate(OpenApi.Summary, "Exchange a username and password for a bearer token")
      .annotate(
        OpenApi.Description,
        "Repeated failures for a username from one address (or from one address for any usernames) lock that address out for a while: 429 with `Retry-After`, the right password included; a username guessed at from many addresses is slowed, never locked. 503 with `Retry-After` while too many logins are being checked at once"
      )
  )
  .add(
    HttpApiEndpoint.post("logout", "/logout")
      .addSuccess(HttpApiSchema.NoContent)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Log out everywhere: every token of the caller stops working at once")
      .annotate(
        OpenApi.Description,
        "Ends all of the caller's sessions (this token and every other one issued before); log in again for a new token"
      )
  )
  .prefix("/v1/auth")
{}
