import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Authentication, LoginResponse } from "../Auth/Api.js"
import { PasswordChecksBusy, TooManyAttempts } from "../Auth/Errors.js"
import { Forbidden, ValidationError } from "../Kit/Errors.js"
import {
  ChangePasswordRequest,
  ChangeRoleRequest,
  CreateUserRequest,
  ListUsersParams,
  ResetPasswordRequest,
  User,
  UserIdPath,
  UserPage
} from "./Domain.js"
import { LastActiveAdmin, UsernameTaken, UserNotFound, WrongCurrentPassword } from "./Errors.js"

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
    HttpApiEndpoint.get("listUsers", "/")
      .setUrlParams(ListUsersParams)
      .addSuccess(UserPage)
      .addError(Forbidden, { status: 403 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Users, newest first, keyset-paginated; filters `role` and `active` (admin only)")
  )
  .add(
    HttpApiEndpoint.get("getMe", "/me")
      .addSuccess(User)
      .annotate(OpenApi.Summary, "The authenticated user")
  )
  .add(
    HttpApiEndpoint.post("changeMyPassword", "/me/password")
      .setPayload(ChangePasswordRequest)
      .addSuccess(LoginResponse)
      .addError(WrongCurrentPassword, { status: 403 })
      .addError(TooManyAttempts, { status: 429 })
      .addError(PasswordChecksBusy, { status: 503 })
      .annotate(OpenApi.Summary, "Change your own password: every other session ends; the answer is a fresh token")
      .annotate(
        OpenApi.Description,
        "403 when `currentPassword` is wrong. Wrong current passwords count as failed logins (429 with `Retry-After` while locked)"
      )
  )
  .add(
    HttpApiEndpoint.get("getUser", "/:id")
      .setPath(UserIdPath)
      .addSuccess(User)
      .addError(Forbidden, { status: 403 })
      .addError(UserNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "A user (admin only)")
  )
  .add(
    HttpApiEndpoint.patch("changeRole", "/:id")
      .setPath(UserIdPath)
      .setPayload(ChangeRoleRequest)
      .addSuccess(User)
      .addError(Forbidden, { status: 403 })
      .addError(UserNotFound, { status: 404 })
      .addError(LastActiveAdmin, { status: 409 })
      .annotate(OpenApi.Summary, "Change a user's role (admin only); their tokens stop working")
      .annotate(
        OpenApi.Description,
        "The same role answers 200 and changes nothing. 409 when it would demote the last active admin"
      )
  )
  .add(
    HttpApiEndpoint.post("deactivateUser", "/:id/deactivate")
      .setPath(UserIdPath)
      .addSuccess(User)
      .addError(Forbidden, { status: 403 })
      .addError(UserNotFound, { status: 404 })
      .addError(LastActiveAdmin, { status: 409 })
      .annotate(OpenApi.Summary, "Deactivate a user (admin only): they cannot log in and their tokens stop working")
      .annotate(
        OpenApi.Description,
        "An inactive user answers 200 and nothing changes. 409 when it would deactivate the last active admin"
      )
  )
  .add(
    HttpApiEndpoint.post("reactivateUser", "/:id/reactivate")
      .setPath(UserIdPath)
      .addSuccess(User)
      .addError(Forbidden, { status: 403 })
      .addError(UserNotFound, { status: 404 })
      .annotate(
        OpenApi.Summary,
        "Reactivate a user (admin only): they can log in again; tokens from before stay refused"
      )
  )
  .add(
    HttpApiEndpoint.post("resetPassword", "/:id/password")
      .setPath(UserIdPath)
      .setPayload(ResetPasswordRequest)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Forbidden, { status: 403 })
      .addError(UserNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Set a user's password (admin only); their tokens stop working")
  )
  .middleware(Authentication)
  .prefix("/v1/users")
{}
