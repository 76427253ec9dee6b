/**
 * The SQLSTATE behind an error from @effect/sql-pg, and what it means for the
 * caller: an expected conflict, a refused connection, or an outage worth
 * waiting out. The only place that reads driver error codes.
 */
import type { SqlError } from "@effect/sql/SqlError"

export const UNIQUE_VIOLATION = "23505"
export const FOREIGN_KEY_VIOLATION = "23503"

const field = (error: unknown, name: "code" | "constraint"): string | undefined => {
  const cause: unknown = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  if (typeof cause === "object" && cause !== null && name in cause) {
    const value = (cause as Record<string, unknown>)[name]
    return typeof value === "string" ? value : undefined
  }
  return undefined
}

/** The SQLSTATE (or a Node error code such as ECONNREFUSED) of the driver error inside `error`. */
export const sqlState = (error: SqlError | unknown): string | undefined => field(error, "code")

/** Names the constraint a violation hit (node-postgres exposes it as `constraint`). */
export const sqlConstraint = (error: SqlError | unknown): string | undefined => field(error, "constraint")

/** SQLSTATE classes that mean "try again later": connection (08), resources (53), operator intervention (57), rollback (40). */
const TRANSIENT_SQLSTATE = /^(08|53|57|40)/

/** True when the database was unreachable or busy (worth holding and retrying), false for a rejected statement. */
export const isTransientSqlError = (error: SqlError): boolean => {
  const code = sqlState(error)
  if (code === undefined) return true // no SQLSTATE: the connection itself failed
  if (/^[0-9A-Z]{5}$/.test(code)) return TRANSIENT_SQLSTATE.test(code)
  return true // ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...
}

/** SQLSTATE 3D000 (no such database), 28000 / 28P01 (authentication): retrying cannot help. */
export const isRefusedConnection = (error: unknown): boolean =>
  ["3D000", "28000", "28P01"].includes(sqlState(error) ?? "")

/** The statement's error with the driver's reason. */
export const describeSqlError = (error: SqlError): string => {
  const cause: unknown = error.cause
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message
}
