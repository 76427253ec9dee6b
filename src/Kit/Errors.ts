/**
 * The API's error vocabulary, and the errors several features share.
 *
 * Errors carry no HTTP status: each feature's Api.ts declares the status it
 * answers them with (`.addError(Forbidden, { status: 403 })`), and HttpApi
 * encodes them as `{ "_tag": ..., "message": ... }`. Errors of different
 * features may answer with the same wire `_tag` (`TicketNotFound` and
 * `DlqEntryNotFound` are both `NotFound`): clients match on the tag, so
 * /openapi.json documents one schema per tag, named after it (`wireTag`).
 */
import { Schema, SchemaAST } from "effect"

const WIRE_TAGS = {
  ValidationError: "The request is invalid; `field` names the offending input",
  Unauthorized: "Missing, invalid or expired credentials",
  Forbidden: "The caller's role does not allow this action",
  NotFound: "No such resource, or not visible to the caller",
  Conflict: "The request conflicts with the current state"
} as const

/** The annotations of an error class answering with `tag`: in /openapi.json, the tag's schema. */
export const wireTag = (tag: keyof typeof WIRE_TAGS) => ({
  [SchemaAST.JSONIdentifierAnnotationId]: tag,
  description: WIRE_TAGS[tag]
})

/** A request that decoded but is still invalid; `field` names the culprit. */
export class ValidationError extends Schema.TaggedError<ValidationError>()(
  "ValidationError",
  { message: Schema.String, field: Schema.String },
  wireTag("ValidationError")
) {}

/** The caller's role does not allow the action. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  wireTag("Forbidden")
) {}
