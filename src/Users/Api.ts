import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Forbidden } from "../Kit/Errors.js"
import { CreateUserRequest, User } from "./Domain.js"
import { UsernameTaken } from "./Errors.js"

export class UsersApi extends HttpApiGroup.make("users")
  .add(
    HttpApiEndpoint.post("createUser", "/")
      .setPayload(CreateUserRequest)
      .addSuccess(User, { status: 201 })
      .addError(Forbidden, { status: 403 })
      .addError(UsernameTaken, { status: 409 })
      .annotate(OpenApi.Summary, "Create a user (admin only)")
  )
  .add(
    HttpApiEndpoint.get("getMe", "/me")
      .addSuccess(User)
      .annotate(OpenApi.Summary, "The authenticated user")
  )
  .middleware(Authentication)
  .prefix("/v1/users")
{}
