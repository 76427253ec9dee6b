/** PostgreSQL error codes behind an SqlError, for the few conflicts that are expected. */
import type { SqlError } from "@effect/sql/SqlError"

export const UNIQUE_VIOLATION = "23505"
export const FOREIGN_KEY_VIOLATION = "23503"

export const sqlState = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  if (typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string") return cause.code
  return undefined
}

/** Names the constraint a violation hit (node-postgres exposes it as `constraint`). */
export const sqlConstraint = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  if (typeof cause === "object" && cause !== null && "constraint" in cause && typeof cause.constraint === "string") return cause.constraint
  return undefined
}
