/**
 * The SQLSTATE behind an error from @effect/sql-pg, and what it means for the
 * caller: an expected conflict, a refused connection, or an outage worth
 * waiting out. The only place that reads driver error codes.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Data } from "effect"

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

export const UNDEFINED_DATABASE = "3D000"
/** CREATE DATABASE of a name that exists; a concurrent one can also hit pg_database's unique index (23505). */
export const DUPLICATE_DATABASE = "42P04"

/** SQLSTATE 3D000 (no such database), 28000 / 28P01 (authentication): retrying cannot help. */
export const isRefusedConnection = (error: unknown): boolean =>
  [UNDEFINED_DATABASE, "28000", "28P01"].includes(sqlState(error) ?? "")

/**
 * PostgreSQL could not be used at start-up: the message is the whole story, in
 * one line that names DATABASE_URL and the fix. The stack is that line alone,
 * because the entrypoints print a failed start's error with its stack.
 */
export class DatabaseUnavailable extends Data.TaggedError("DatabaseUnavailable")<{
  readonly message: string
  /** The SQLSTATE or Node error code behind it, when there is one. */
  readonly code: string | undefined
}> {
  constructor(args: { readonly message: string; readonly code: string | undefined }) {
    super(args)
    this.stack = `DatabaseUnavailable: ${args.message}`
  }
}

/** `url` without its password, to show in a message. */
export const displayUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(not a URL)"
  }
}

/** The driver's reason, one line. */
export const driverReason = (error: unknown): string => {
  const cause: unknown = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  const reason = cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error)
  // Node's AggregateError (localhost resolving to ::1 and 127.0.0.1) has no message of its own.
  const inner = cause instanceof AggregateError && reason === "" ? cause.errors.map(String).join("; ") : reason
  return inner.replace(/\s+/g, " ").trim()
}

/**
 * What to do when connecting to `url` (DATABASE_URL) failed with `error`: one
 * line naming DATABASE_URL, for a missing role, a wrong password, nothing
 * listening and a missing database; the driver's reason otherwise.
 */
export const connectionHint = (error: unknown, url: string): string => {
  const code = sqlState(error)
  const reason = driverReason(error)
  const shown = displayUrl(url)
  let user = "", host = "", database = ""
  try {
    const parsed = new URL(url)
    user = decodeURIComponent(parsed.username)
    host = parsed.host
    database = decodeURIComponent(parsed.pathname.slice(1))
  } catch {
    // displayUrl already says it is not a URL.
  }
  switch (code) {
    case "28000":
      return `PostgreSQL at ${host} refused role "${user}" (${reason}): create the role (\`npm run services\` creates opsdesk/opsdesk), or set DATABASE_URL (now ${shown}) to a role that may connect`
    case "28P01":
      // A server that asks for passwords answers the same for a role that does not exist.
      return `PostgreSQL at ${host} refused the password of "${user}" (${reason}): set the right password in DATABASE_URL (now ${shown}), or create the role (\`npm run services\` creates opsdesk/opsdesk)`
    case "ECONNREFUSED":
      return `Nothing accepts connections at ${host} (${reason}): start PostgreSQL (\`npm run services\`), or point DATABASE_URL (now ${shown}) at it`
    case UNDEFINED_DATABASE:
      return `PostgreSQL at ${host} has no database "${database}" (${reason}): create it (\`npm run migrate\` does, as a role with CREATEDB), or fix DATABASE_URL (now ${shown})`
    default:
      return `Cannot use PostgreSQL at DATABASE_URL (now ${shown}): ${reason}`
  }
}

/** The statement's error with the driver's reason. */
export const describeSqlError = (error: SqlError): string => {
  const cause: unknown = error.cause
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message
}
