/**
 * What the ticket use cases fail with. The statuses are declared by Api.ts;
 * the wire `_tag`s are the API's error vocabulary (Kit/Errors.ts).
 */
import { Schema } from "effect"
import { wireTag } from "../Kit/Errors.js"

/** No such ticket, or one the caller may not see (its existence does not leak). */
export class TicketNotFound extends Schema.TaggedError<TicketNotFound>("TicketNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {
  static of(id: string) {
    return new TicketNotFound({ message: `ticket ${id} not found` })
  }
}

/** A status change the status machine does not allow from the ticket's current status. */
export class InvalidTransition extends Schema.TaggedError<InvalidTransition>("InvalidTransition")(
  "Conflict",
  { message: Schema.String },
  wireTag("Conflict")
) {}

/** An assignee that is not an existing agent or admin. */
export class InvalidAssignee extends Schema.TaggedError<InvalidAssignee>("InvalidAssignee")(
  "ValidationError",
  { message: Schema.String, field: Schema.String },
  wireTag("ValidationError")
) {}
