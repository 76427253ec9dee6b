/** What authentication fails with. The statuses are declared by Api.ts (401, 429, 503). */
import { Schema } from "effect"
import { wireTag } from "../Kit/Errors.js"

/** The request's credentials are missing, invalid or expired, or their user no longer exists. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  wireTag("Unauthorized")
) {}

/** A login with an unknown username or a wrong password (the two are not told apart). */
export class InvalidCredentials extends Schema.TaggedError<InvalidCredentials>("InvalidCredentials")(
  "Unauthorized",
  { message: Schema.String },
  wireTag("Unauthorized")
) {}

/** A login while its username (or client address) is locked out after repeated failures. */
export class TooManyAttempts extends Schema.TaggedError<TooManyAttempts>()(
  "TooManyAttempts",
  { message: Schema.String, retryAfterSeconds: Schema.Int },
  { description: "Too many failed logins: retry after `retryAfterSeconds` (also in the `Retry-After` header)" }
) {}

/** A login while every password check is taken and none can wait: retry after `retryAfterSeconds`. */
export class PasswordChecksBusy extends Schema.TaggedError<PasswordChecksBusy>("PasswordChecksBusy")(
  "ServiceUnavailable",
  { message: Schema.String, retryAfterSeconds: Schema.Int },
  {
    description:
      "Too many logins are being checked at once: retry after `retryAfterSeconds` (also in the `Retry-After` header)"
  }
) {}
