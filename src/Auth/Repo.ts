/**
 * What authentication reads of a user (the stored credentials of a username,
 * the identity behind a token) and its one write (logout ends every session).
 * Auth owns these so that it depends on no other feature (Users builds on Auth).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { traced } from "../Observability/Span.js"
import { recordAudit } from "../Store/Audit.js"
import type { Role } from "./CurrentUser.js"

export interface Credentials {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly passwordHash: string
  readonly tokenVersion: number
}

/** A user as authentication sees it on every request. */
export interface IdentityRow {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly active: boolean
  /** Tokens carrying another version are refused (see Identity.ts). */
  readonly tokenVersion: number
}

export class AuthRepo extends Effect.Service<AuthRepo>()("OpsDesk/Auth/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** Only an active user's: a deactivated user cannot log in. */
    const findCredentials = (username: string) =>
      sql<Credentials>`SELECT id, username, role, password_hash, token_version FROM users
        WHERE username = ${username} AND active`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.orDie,
        traced("AuthRepo.findCredentials")
      )

    const findIdentity = (id: string) =>
      sql<IdentityRow>`SELECT id, username, role, active, token_version FROM users WHERE id = ${id}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.orDie,
        traced("AuthRepo.findIdentity")
      )

    /** Ends every session of the user (bumps its token version), audited; false if the user is gone. */
    const logoutEverywhere = (userId: string) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const rows = yield* sql<{ readonly tokenVersion: number }>`UPDATE users
            SET token_version = token_version + 1, updated_at = now()
            WHERE id = ${userId} RETURNING token_version`
          if (rows.length === 0) return false
          yield* recordAudit({
            actorId: userId,
            action: "user.logout",
            entity: "user",
            entityId: userId,
            changes: { tokenVersion: rows[0]!.tokenVersion }
          })
          return true
        })
      ).pipe(Effect.orDie, traced("AuthRepo.logoutEverywhere"))

    /**
     * Replaces a hash weaker than today's (Password.needsRehash) after a successful login; a no-op when the
     * password changed meanwhile. Not a credential change: token versions stay.
     */
    const upgradeHash = (userId: string, previous: string, next: string) =>
      sql`UPDATE users SET password_hash = ${next} WHERE id = ${userId} AND password_hash = ${previous}`.pipe(
        Effect.asVoid,
        Effect.orDie,
        traced("AuthRepo.upgradeHash")
      )

    return { findCredentials, findIdentity, logoutEverywhere, upgradeHash } as const
  })
}) {}
