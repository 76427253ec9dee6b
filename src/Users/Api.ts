import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Conflict, Forbidden } from "../Kit/Errors.js"
import { CreateUserRequest, User } from "./Domain.js"

export class UsersApi extends HttpApiGroup.make("users")
  .add(
    HttpApiEndpoint.post("createUser", "/")
      .setPayload(CreateUserRequest)
      .addSuccess(User, { status: 201 })
      .addError(Forbidden)
      .addError(Conflict)
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
