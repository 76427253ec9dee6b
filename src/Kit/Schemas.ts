/** Small Schemas shared by several features. */
import { Schema } from "effect"

/** Timestamps travel as ISO-8601 strings in UTC, as in the domain events. */
export const Timestamp = Schema.String.annotations({ format: "date-time", description: "ISO-8601 timestamp (UTC)" })

// NUL (PostgreSQL text cannot hold it) or a UTF-16 surrogate without its pair (jsonb rejects it).
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Free text that PostgreSQL can store as text and as jsonb. */
export const StorableText = Schema.String.pipe(
  Schema.filter((s) => !UNSTORABLE.test(s), { message: () => "must not contain NUL characters or unpaired surrogates" })
)

/**
 * A secret (a password) as a request carries it, `min` to `max` characters.
 * Its messages never quote the value, so a 400 does not echo a password back
 * (nor into whatever logs the response on the way).
 */
export const SecretString = (what: string, min: number, max: number) =>
  Schema.String.annotations({ message: () => `${what} must be a string` }).pipe(
    Schema.minLength(min, { message: () => `${what} must be at least ${min} character(s) long` }),
    Schema.maxLength(max, { message: () => `${what} must be at most ${max} characters long` })
  )
