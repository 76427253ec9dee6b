/** What the webhook use cases fail with. The statuses are declared by Api.ts. */
import { Schema } from "effect"
import { wireTag } from "../Kit/Errors.js"

/** No webhook subscription with this id. */
export class WebhookNotFound extends Schema.TaggedError<WebhookNotFound>("WebhookNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {
  static of(id: string) {
    return new WebhookNotFound({ message: `webhook subscription ${id} not found` })
  }
}
