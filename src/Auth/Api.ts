/**
 * Authentication: the public login endpoint (its own group, so no bearer
 * middleware applies to it) and the bearer middleware every other group uses.
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
import { InvalidCredentials, TooManyAttempts, Unauthorized } from "./Errors.js"

/**
 * Every endpoint behind this middleware may answer 401: a refused token, or
 * (from the handler) a token whose user no longer exists.
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
})

export class AuthApi extends HttpApiGroup.make("auth")
  .add(
    HttpApiEndpoint.post("login", "/login")
      .setPayload(LoginRequest)
      .addSuccess(LoginResponse)
      .addError(InvalidCredentials, { status: 401 })
      .addError(TooManyAttempts, { status: 429 })
      .annotate(OpenApi.Summary, "Exchange a username and password for a bearer token")
      .annotate(
        OpenApi.Description,
        "Repeated failures for a username (or from one address) lock it for a while: 429 with `Retry-After`, the right password included"
      )
  )
  .prefix("/v1/auth")
{}
