/**
 * Makes sure the bootstrap admin exists (ADMIN_USERNAME / ADMIN_PASSWORD,
 * default admin / admin123). Creates it only when the username is free, so a
 * changed password is never reset. Safe to run concurrently (ON CONFLICT).
 * Run after migrations by the API at start and by `npm run migrate`.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Redacted } from "effect"
import { hashPassword } from "../Auth/Password.js"
import { AdminCredentials } from "../Config.js"
import { traced } from "../Observability/Span.js"
import { recordAudit } from "../Store/Audit.js"

export const ensureAdmin = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const { password, username } = yield* AdminCredentials
  const existing = yield* sql`SELECT 1 FROM users WHERE username = ${username}`
  if (existing.length > 0) return yield* Effect.logDebug(`Admin user '${username}' exists`)
  const hash = yield* hashPassword(Redacted.value(password))
  const created = yield* sql.withTransaction(
    Effect.gen(function*() {
      const rows = yield* sql<{ readonly id: string }>`INSERT INTO users (username, password_hash, role)
        VALUES (${username}, ${hash}, 'admin') ON CONFLICT (username) DO NOTHING RETURNING id`
      const row = rows[0]
      if (row === undefined) return false
      yield* recordAudit({
        actorId: null,
        action: "user.create",
        entity: "user",
        entityId: row.id,
        changes: { username, role: "admin" }
      })
      return true
    })
  )
  if (created) yield* Effect.logInfo(`Created admin user '${username}'`)
}).pipe(traced("Users.ensureAdmin"))
