/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): a secret
 * is `whsec_` + base64 of 24 to 64 random bytes; each delivery carries
 * `webhook-id` (its idempotency key: the same on every retry),
 * `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`,
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. During a secret
 * rotation's overlap the header carries one signature per live secret,
 * space-separated, so a receiver holding either secret verifies it.
 * The signing itself is the `standardwebhooks` package's, which receivers'
 * libraries are tested against.
 */
import { randomBytes } from "node:crypto"
import { Webhook } from "standardwebhooks"

export const SECRET_PREFIX = "whsec_"
/** The spec's bounds for a secret's key: 24 bytes (192 bits) to 64. */
export const MIN_SECRET_BYTES = 24
export const MAX_SECRET_BYTES = 64
/** A generated secret's key: 256 bits, HMAC-SHA256's own size. */
const GENERATED_SECRET_BYTES = 32

export const generateSecret = (): string => SECRET_PREFIX + randomBytes(GENERATED_SECRET_BYTES).toString("base64")

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** Why `secret` cannot be a webhook secret (one line), or undefined when it can. Never quotes the secret. */
export const secretProblem = (secret: string): string | undefined => {
  const format =
    `secret must be "${SECRET_PREFIX}" followed by the base64 of ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} random bytes`
  if (!secret.startsWith(SECRET_PREFIX)) return format
  const encoded = secret.slice(SECRET_PREFIX.length)
  if (!BASE64.test(encoded)) return format
  const bytes = Buffer.from(encoded, "base64").length
  if (bytes < MIN_SECRET_BYTES) {
    return `secret is too short: its key has ${bytes} bytes, at least ${MIN_SECRET_BYTES} are needed`
  }
  if (bytes > MAX_SECRET_BYTES) return `secret is too long: its key has ${bytes} bytes, at most ${MAX_SECRET_BYTES}`
  return undefined
}

/** The `webhook-signature` value: one `v1,<signature>` per secret, space-separated, in the order given. */
export const signature = (
  secrets: ReadonlyArray<string>,
  id: string,
  timestamp: Date,
  body: string
): string => secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(" ")

/** The three Standard Webhooks headers of one attempt. */
export const signedHeaders = (
  secrets: ReadonlyArray<string>,
  id: string,
  timestamp: Date,
  body: string
): Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string> => ({
  "webhook-id": id,
  "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
  "webhook-signature": signature(secrets, id, timestamp, body)
})
