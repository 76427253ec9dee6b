/** Users as the API shows them (never with the password hash) and the requests about them. */
import { Schema } from "effect"
import { Role } from "../Auth/CurrentUser.js"
import { SecretString, Timestamp } from "../Kit/Schemas.js"

export const Username = Schema.String.pipe(
  Schema.minLength(3),
  Schema.maxLength(64),
  Schema.pattern(/^[a-zA-Z0-9_.-]+$/, { message: () => "username may only contain letters, digits, '_', '.' and '-'" })
)

export const Password = SecretString("password", 8, 200)

export const User = Schema.Struct({
  id: Schema.UUID,
  username: Schema.String,
  role: Role,
  createdAt: Timestamp
}).annotations({ identifier: "User" })
export type User = typeof User.Type

export const CreateUserRequest = Schema.Struct({ username: Username, password: Password, role: Role })
  .annotations({ identifier: "CreateUserRequest" })
export type CreateUserRequest = typeof CreateUserRequest.Type
