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
  UpdateMeRequest,
  User,
  UserIdPath,
  UserPage
} from "./Domain.js"
import { LastActiveAdmin, UsernameTaken, UserNotFound, WrongCurrentPassword } from "./Errors.js"
import { Preferences, UpdatePreferencesRequest } from "./Preferences.js"

export class UsersApi extends HttpApiGroup.make("users")
  .annotate(
    OpenApi.Description,
    "The caller's own account, and user administration (admins): roles, deactivation, password resets."
  )
  .add(
    HttpApiEndpoint.post("createUser", "/")
      .annotate(
        OpenApi.Description,
        "Usernames are unique (409 when taken); the password is stored as an Argon2id hash and never returned. `email` (optional, at most 254 characters, name@host) is where the user's email notifications go. The new user logs in with `POST /v1/auth/login`."
      )
      .setPayload(CreateUserRequest)
      .addSuccess(User, { status: 201 })
      .addError(Forbidden, { status: 403 })
      .addError(UsernameTaken, { status: 409 })
      .annotate(OpenApi.Summary, "Create a user (admin only)")
  )
  .add(
    HttpApiEndpoint.get("listUsers", "/")
      .annotate(
        OpenApi.Description,
        "Admins only (403 otherwise). `limit` 1-100 (default 20); pass the page's `nextCursor` as `cursor` for the next page."
      )
      .setUrlParams(ListUsersParams)
      .addSuccess(UserPage)
      .addError(Forbidden, { status: 403 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Users, newest first, keyset-paginated; filters `role` and `active` (admin only)")
  )
  .add(
    HttpApiEndpoint.get("getMe", "/me")
      .annotate(
        OpenApi.Description,
        "Read from the database on every request, so a role change or deactivation shows at once."
      )
      .addSuccess(User)
      .annotate(OpenApi.Summary, "The authenticated user")
  )
  .add(
    HttpApiEndpoint.patch("updateMe", "/me")
      .annotate(
        OpenApi.Description,
        "`email`: where your email notifications go (at most 254 characters, name@host; 400 otherwise); null removes it and no email is sent to you. Several accounts may share an address. Audited without the address."
      )
      .setPayload(UpdateMeRequest)
      .addSuccess(User)
      .annotate(OpenApi.Summary, "Change your own account: your email address")
  )
  .add(
    HttpApiEndpoint.get("getMyPreferences", "/me/preferences")
      .annotate(OpenApi.Description, "Users who never set them get the defaults: both channels on.")
      .addSuccess(Preferences)
      .annotate(OpenApi.Summary, "Your notification preferences: email and in-app, each on or off")
  )
  .add(
    HttpApiEndpoint.patch("updateMyPreferences", "/me/preferences")
      .setPayload(UpdatePreferencesRequest)
      .addSuccess(Preferences)
      .annotate(OpenApi.Summary, "Turn email or in-app notifications on or off; what is left out stays as it is")
      .annotate(
        OpenApi.Description,
        "Applies to events the worker handles from then on; notifications already written stay"
      )
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
      .annotate(OpenApi.Description, "Admins only (403 otherwise); 404 for an unknown id.")
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
      .annotate(
        OpenApi.Description,
        "An active user answers 200 and nothing changes. The user logs in again for a new token."
      )
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
      .annotate(
        OpenApi.Description,
        "For a user who lost their password: every session of theirs ends; they log in with the new one."
      )
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
