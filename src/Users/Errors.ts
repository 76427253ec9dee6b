/** What the user use cases fail with. The statuses are declared by Api.ts. */
import { Schema } from "effect"
import { wireTag } from "../Kit/Errors.js"

/** Another user already has this username. */
export class UsernameTaken extends Schema.TaggedError<UsernameTaken>("UsernameTaken")(
  "Conflict",
  { message: Schema.String },
  wireTag("Conflict")
) {}

/** No user with this id. */
export class UserNotFound extends Schema.TaggedError<UserNotFound>("UserNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {
  static of(id: string) {
    return new UserNotFound({ message: `user ${id} not found` })
  }
}

/** The change would leave no active admin: nobody could manage users any more. */
export class LastActiveAdmin extends Schema.TaggedError<LastActiveAdmin>("LastActiveAdmin")(
  "Conflict",
  { message: Schema.String },
  wireTag("Conflict")
) {}

/** A password change whose `currentPassword` is not the caller's password. */
export class WrongCurrentPassword extends Schema.TaggedError<WrongCurrentPassword>("WrongCurrentPassword")(
  "Forbidden",
  { message: Schema.String },
  wireTag("Forbidden")
) {}
