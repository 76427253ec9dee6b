/**
 * Errors that cross HTTP. Each is a tagged Schema class whose status lives in
 * its annotation, so HttpApi encodes it as `{ "_tag": ..., "message": ... }`
 * with that status, and OpenAPI lists it.
 */
import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** 400 for a request that decoded but is still invalid; `field` names the culprit. */
export class ValidationError extends Schema.TaggedError<ValidationError>()(
  "ValidationError",
  { message: Schema.String, field: Schema.String },
  HttpApiSchema.annotations({ status: 400, description: "The request is invalid; `field` names the offending input" })
) {}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401, description: "Missing, invalid or expired credentials" })
) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403, description: "The caller's role does not allow this action" })
) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404, description: "No such resource, or not visible to the caller" })
) {
  static entity(entity: string, id: string) {
    return new NotFound({ message: `${entity} ${id} not found` })
  }
}

export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409, description: "The request conflicts with the current state" })
) {}

/** 429 while a username (or client address) is locked out after repeated failed logins. */
export class TooManyAttempts extends Schema.TaggedError<TooManyAttempts>()(
  "TooManyAttempts",
  { message: Schema.String, retryAfterSeconds: Schema.Int },
  HttpApiSchema.annotations({
    status: 429,
    description: "Too many failed logins: retry after `retryAfterSeconds` (also in the `Retry-After` header)"
  })
) {}
