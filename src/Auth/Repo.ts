/**
 * What authentication reads of a user: the stored credentials of a username.
 * Auth owns this read so that it depends on no other feature (Users builds on Auth).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type { Role } from "./CurrentUser.js"

export interface Credentials {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly passwordHash: string
}

export class AuthRepo extends Effect.Service<AuthRepo>()("OpsDesk/Auth/Repo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const findCredentials = (username: string) =>
      sql<Credentials>`SELECT id, username, role, password_hash FROM users WHERE username = ${username}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.orDie,
        Effect.withSpan("AuthRepo.findCredentials")
      )

    return { findCredentials } as const
  })
}) {}
