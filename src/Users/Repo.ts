/**
 * SQL for users. Database failures are defects here (a 500), except the one
 * conflict a client can cause: a taken username (SQLSTATE 23505), which
 * becomes `UsernameTaken`.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type { Role } from "../Auth/CurrentUser.js"
import { recordAudit } from "../Store/Audit.js"
import { sqlState, UNIQUE_VIOLATION } from "../Store/SqlState.js"
import type { User } from "./Domain.js"
import { UsernameTaken } from "./Errors.js"

interface UserRow {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly createdAt: Date
}

const toUser = (row: UserRow): User => ({
  id: row.id,
  username: row.username,
  role: row.role,
  createdAt: row.createdAt.toISOString()
})

export class UsersRepo extends Effect.Service<UsersRepo>()("OpsDesk/Users/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const findById = (id: string) =>
      sql<UserRow>`SELECT id, username, role, created_at FROM users WHERE id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toUser)),
        Effect.orDie,
        Effect.withSpan("UsersRepo.findById")
      )

    /** Inserts the user and its audit row in one transaction. */
    const insert = (
      input: { readonly username: string; readonly passwordHash: string; readonly role: Role },
      actorId: string | null
    ) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const [row] = yield* sql<UserRow>`INSERT INTO users (username, password_hash, role)
            VALUES (${input.username}, ${input.passwordHash}, ${input.role}) RETURNING id, username, role, created_at`
          const user = toUser(row!)
          yield* recordAudit({
            actorId,
            action: "user.create",
            entity: "user",
            entityId: user.id,
            changes: { username: user.username, role: user.role }
          })
          return user
        })
      ).pipe(
        Effect.catchTag("SqlError", (e) =>
          sqlState(e) === UNIQUE_VIOLATION
            ? Effect.fail(new UsernameTaken({ message: `username '${input.username}' is already taken` }))
            : Effect.die(e)),
        Effect.withSpan("UsersRepo.insert")
      )

    return { findById, insert } as const
  })
}) {}
