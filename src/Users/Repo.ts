/**
 * SQL for users. Database failures are defects here (a 500), except the one
 * conflict a client can cause: a taken username (SQLSTATE 23505), which
 * becomes `UsernameTaken`. Every write commits its audit row with it, and
 * every change to a user's access (role, active, password) bumps their
 * `token_version`, which ends all of their older tokens (src/Auth/Identity.ts).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type { Role } from "../Auth/CurrentUser.js"
import { CURSOR_TS, type Position } from "../Kit/Pagination.js"
import { traced } from "../Observability/Span.js"
import { recordAudit } from "../Store/Audit.js"
import { sqlState, UNIQUE_VIOLATION } from "../Store/SqlState.js"
import type { User } from "./Domain.js"
import { LastActiveAdmin, UsernameTaken, UserNotFound } from "./Errors.js"

interface UserRow {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly active: boolean
  readonly email: string | null
  readonly createdAt: Date
}

interface ListedRow extends UserRow {
  readonly cursorTs: string
}

export interface ListFilter {
  readonly role?: Role | undefined
  readonly active?: boolean | undefined
  readonly after?: Position | undefined
  readonly limit: number
}

/** A change of role or of the active flag; what is left out stays as it is. */
export interface AccessChange {
  readonly role?: Role
  readonly active?: boolean
}

const COLUMNS = "id, username, role, active, email, created_at"

export const toUser = (row: UserRow): User => ({
  id: row.id,
  username: row.username,
  role: row.role,
  active: row.active,
  email: row.email,
  createdAt: row.createdAt.toISOString()
})

const actionOf = (change: AccessChange, active: boolean) =>
  change.role !== undefined ? "user.role_change" : active ? "user.reactivate" : "user.deactivate"

export class UsersRepo extends Effect.Service<UsersRepo>()("OpsDesk/Users/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)
    const cursorTs = sql.literal(CURSOR_TS)

    const findById = (id: string) =>
      sql<UserRow>`SELECT ${columns} FROM users WHERE id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toUser)),
        Effect.orDie,
        traced("UsersRepo.findById")
      )

    /** The password hash of an active user, for checking their current password. */
    const findPasswordHash = (id: string) =>
      sql<{ readonly passwordHash: string }>`SELECT password_hash FROM users WHERE id = ${id} AND active`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.passwordHash)),
        Effect.orDie,
        traced("UsersRepo.findPasswordHash")
      )

    /** Newest first; fetches one row more than the page to know whether another page follows. */
    const list = (filter: ListFilter) => {
      const where = [
        filter.role !== undefined ? sql`role = ${filter.role}` : undefined,
        filter.active !== undefined ? sql`active = ${filter.active}` : undefined,
        filter.after !== undefined
          ? sql`(created_at, id) < (${filter.after.ts}::timestamptz, ${filter.after.id}::uuid)`
          : undefined
      ].filter((f) => f !== undefined)
      return sql<ListedRow>`SELECT ${columns}, ${cursorTs} AS cursor_ts FROM users
        ${where.length > 0 ? sql`WHERE ${sql.and(where)}` : sql``}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit + 1}`.pipe(
        Effect.orDie,
        traced("UsersRepo.list")
      )
    }

    /** Inserts the user and its audit row in one transaction. */
    const insert = (
      input: {
        readonly username: string
        readonly passwordHash: string
        readonly role: Role
        readonly email: string | null
      },
      actorId: string | null
    ) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const [row] = yield* sql<UserRow>`INSERT INTO users (username, password_hash, role, email)
            VALUES (${input.username}, ${input.passwordHash}, ${input.role}, ${input.email}) RETURNING ${columns}`
          const user = toUser(row!)
          yield* recordAudit({
            actorId,
            action: "user.create",
            entity: "user",
            entityId: user.id,
            // Whether an address was given, not the address: the audit log is kept a year and read widely.
            changes: { username: user.username, role: user.role, ...(user.email === null ? {} : { email: "set" }) }
          })
          return user
        })
      ).pipe(
        Effect.catchTag("SqlError", (e) =>
          sqlState(e) === UNIQUE_VIOLATION
            ? Effect.fail(new UsernameTaken({ message: `username '${input.username}' is already taken` }))
            : Effect.die(e)),
        traced("UsersRepo.insert")
      )

    /**
     * Changes a user's role or active flag, bumping their token version, with
     * its audit row; a change that changes nothing writes nothing. Refuses to
     * leave no active admin. Access changes take one transaction-scoped
     * advisory lock, so two concurrent demotions cannot each count the other
     * as the admin who remains.
     */
    const changeAccess = (id: string, change: AccessChange, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          yield* sql`SELECT pg_advisory_xact_lock(hashtext('opsdesk.users.access'))`
          const [row] = yield* sql<UserRow>`SELECT ${columns} FROM users WHERE id = ${id} FOR UPDATE`
          if (row === undefined) return yield* Effect.fail(UserNotFound.of(id))
          const role = change.role ?? row.role
          const active = change.active ?? row.active
          if (role === row.role && active === row.active) return toUser(row)
          const wasAdmin = row.role === "admin" && row.active
          if (wasAdmin && !(role === "admin" && active)) {
            const [count] = yield* sql<{ readonly others: number }>`SELECT count(*)::int AS others FROM users
              WHERE role = 'admin' AND active AND id <> ${id}`
            if (count!.others === 0) {
              return yield* Effect.fail(
                new LastActiveAdmin({
                  message: `user ${id} is the last active admin: make another user an admin first`
                })
              )
            }
          }
          const [updated] = yield* sql<UserRow>`UPDATE users
            SET role = ${role}, active = ${active}, token_version = token_version + 1, updated_at = now()
            WHERE id = ${id} RETURNING ${columns}`
          yield* recordAudit({
            actorId,
            action: actionOf(change, active),
            entity: "user",
            entityId: id,
            changes: change.role !== undefined
              ? { role: { from: row.role, to: role } }
              : { active: { from: row.active, to: active } }
          })
          return toUser(updated!)
        })
      ).pipe(Effect.catchTag("SqlError", Effect.die), traced("UsersRepo.changeAccess"))

    /**
     * Stores a new password hash and bumps the token version, with its audit
     * row (which never holds the password nor its hash). With `expectedHash`,
     * only if the stored hash is still that one (the password the caller
     * proved). The user's new token version, or None when nothing matched.
     */
    const setPassword = (
      id: string,
      passwordHash: string,
      audit: { readonly actorId: string; readonly action: "user.password_reset" | "user.password_change" },
      expectedHash?: string
    ) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const rows = yield* sql<{ readonly tokenVersion: number }>`UPDATE users
            SET password_hash = ${passwordHash}, token_version = token_version + 1, updated_at = now()
            WHERE id = ${id} ${expectedHash === undefined ? sql`` : sql`AND password_hash = ${expectedHash}`}
            RETURNING token_version`
          const row = rows[0]
          if (row === undefined) return Option.none<number>()
          yield* recordAudit({
            actorId: audit.actorId,
            action: audit.action,
            entity: "user",
            entityId: id,
            changes: {}
          })
          return Option.some(row.tokenVersion)
        })
      ).pipe(Effect.orDie, traced("UsersRepo.setPassword"))

    /**
     * Sets (or, null, removes) a user's email address, with its audit row (which says set or removed, never
     * the address); setting the address it already has writes nothing. None when the user does not exist.
     * Not an access change: the token version stays. No unique key: two accounts may share a mailbox.
     */
    const setEmail = (id: string, email: string | null, actorId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const rows = yield* sql<UserRow>`UPDATE users SET email = ${email}, updated_at = now()
            WHERE id = ${id} AND email IS DISTINCT FROM ${email} RETURNING ${columns}`
          const row = rows[0]
          if (row === undefined) return yield* findById(id)
          yield* recordAudit({
            actorId,
            action: "user.email_change",
            entity: "user",
            entityId: id,
            changes: { email: email === null ? "removed" : "set" }
          })
          return Option.some(toUser(row))
        })
      ).pipe(Effect.orDie, traced("UsersRepo.setEmail"))

    return { findById, findPasswordHash, list, insert, changeAccess, setPassword, setEmail } as const
  })
}) {}
