/** Users as the API shows them (never with the password hash) and the requests about them. */
import { Schema } from "effect"
import { Role } from "../Auth/CurrentUser.js"
import { Cursor, Limit } from "../Kit/Pagination.js"
import { SecretString, Timestamp } from "../Kit/Schemas.js"

export const Username = Schema.String.pipe(
  Schema.minLength(3),
  Schema.maxLength(64),
  Schema.pattern(/^[a-zA-Z0-9_.-]+$/, { message: () => "username may only contain letters, digits, '_', '.' and '-'" })
)

export const Password = SecretString("password", 8, 200)

/**
 * Where email notifications go. The WHATWG pattern of `<input type=email>` (one `@`, a dot-atom local part,
 * host labels of letters, digits and hyphens: `ops@localhost` passes), at most 254 characters (RFC 5321's
 * path limit); stricter than the column's own check (migration 0009). The SMTP server is the final judge.
 */
export const Email = Schema.String.pipe(
  Schema.maxLength(254, { message: () => "email must be at most 254 characters" }),
  Schema.pattern(
    /^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/,
    { message: () => "email must be an address such as name@example.com" }
  )
).annotations({ format: "email", examples: ["alice@example.com"] })

export const User = Schema.Struct({
  id: Schema.UUID,
  username: Schema.String,
  role: Role,
  active: Schema.Boolean.annotations({ description: "A deactivated user cannot log in, and their tokens are refused" }),
  // Shown as stored (a row written before the API checked addresses still encodes); only to the user and admins.
  email: Schema.NullOr(Schema.String).annotations({
    description: "Where email notifications go; null: none are sent. Shown only to the user themself and to admins"
  }),
  createdAt: Timestamp
}).annotations({
  identifier: "User",
  examples: [{
    id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    username: "alice",
    role: "agent",
    active: true,
    email: "alice@example.com",
    createdAt: "2026-12-02T10:00:00.000Z"
  }]
})
export type User = typeof User.Type

export const UserPage = Schema.Struct({
  items: Schema.Array(User),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "UserPage" })
export type UserPage = typeof UserPage.Type

export const CreateUserRequest = Schema.Struct({
  username: Username,
  password: Password,
  role: Role,
  email: Schema.optional(Email)
}).annotations({ identifier: "CreateUserRequest" })
export type CreateUserRequest = typeof CreateUserRequest.Type

/** The caller's own account: `email` null removes the address (no more email notifications). */
export const UpdateMeRequest = Schema.Struct({ email: Schema.NullOr(Email) }).annotations({
  identifier: "UpdateMeRequest"
})
export type UpdateMeRequest = typeof UpdateMeRequest.Type

export const ChangeRoleRequest = Schema.Struct({ role: Role }).annotations({ identifier: "ChangeRoleRequest" })

export const ResetPasswordRequest = Schema.Struct({ password: Password }).annotations({
  identifier: "ResetPasswordRequest"
})

export const ChangePasswordRequest = Schema.Struct({
  // Any length, as a login accepts: only the new one must meet the rules.
  currentPassword: SecretString("currentPassword", 1, 200),
  newPassword: SecretString("newPassword", 8, 200)
}).annotations({ identifier: "ChangePasswordRequest" })

export const ListUsersParams = Schema.Struct({
  role: Schema.optional(Role),
  active: Schema.optional(Schema.BooleanFromString.annotations({ description: "`true` or `false`" })),
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListUsersParams = typeof ListUsersParams.Type

export const UserIdPath = Schema.Struct({ id: Schema.UUID })
