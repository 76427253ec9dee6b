/**
 * Authentication: the public login endpoint (its own group, so no bearer
 * middleware applies to it) and the bearer middleware every other group uses.
 */
import { HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { TooManyAttempts, Unauthorized } from "../Kit/Errors.js"
import { SecretString, StorableText } from "../Kit/Schemas.js"
import { CurrentUser } from "./CurrentUser.js"

export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("OpsDesk/Auth/Authentication", {
  failure: Unauthorized,
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
      .addError(Unauthorized)
      .addError(TooManyAttempts)
      .annotate(OpenApi.Summary, "Exchange a username and password for a bearer token")
      .annotate(
        OpenApi.Description,
        "Repeated failures for a username (or from one address) lock it for a while: 429 with `Retry-After`, the right password included"
      )
  )
  .prefix("/v1/auth")
{}
