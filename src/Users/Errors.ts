/** What the user use cases fail with. The status is declared by Api.ts. */
import { Schema } from "effect"
import { wireTag } from "../Kit/Errors.js"

/** Another user already has this username. */
export class UsernameTaken extends Schema.TaggedError<UsernameTaken>("UsernameTaken")(
  "Conflict",
  { message: Schema.String },
  wireTag("Conflict")
) {}
