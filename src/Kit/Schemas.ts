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

const MAX_BIGINT = 9_223_372_036_854_775_807n

/**
 * The id of a row keyed by a PostgreSQL `bigint`, as typed by a person or a
 * script: up to 19 digits after any leading zeros, up to bigint's maximum.
 * Decodes to its one spelling ("007" is "7"), the one the database answers
 * with, so an id compares equal to what a query returns.
 */
export const BigintId = Schema.transform(
  Schema.String.pipe(
    Schema.pattern(/^0*\d{1,19}$/, { message: () => "must be a numeric id" }),
    Schema.filter((s) => BigInt(s) <= MAX_BIGINT, { message: () => "must be a numeric id (at most 2^63 - 1)" })
  ),
  Schema.String,
  { strict: true, decode: (s) => BigInt(s).toString(), encode: (s) => s }
).annotations({ description: "Numeric id (a string of digits)" })
