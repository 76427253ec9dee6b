/**
 * Per-test data: users with a random suffix, their tokens, and a cleanup
 * that removes everything they caused (outbox and audit rows, messages,
 * tickets, the users), so the suite can run again and again.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Role } from "../../../src/Auth/CurrentUser.js"
import { hashPassword } from "../../../src/Auth/Password.js"
import { Tokens } from "../../../src/Auth/Tokens.js"

export const PASSWORD = "correct-horse-battery"

// One password hash for every test user (hashing is deliberately slow).
let passwordHash: Promise<string> | undefined
const knownHash = Effect.promise(() => (passwordHash ??= Effect.runPromise(hashPassword(PASSWORD))))

export interface TestUser {
  readonly id: string
  readonly username: string
  readonly role: Role
  readonly token: string
}

export const suffix = () => crypto.randomUUID().slice(0, 8)

/** Deletes every row the given users caused. */
export const cleanupUsers = (userIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (userIds.length === 0) return
    const sql = yield* SqlClient.SqlClient
    const users = sql.in(userIds)
    yield* sql.withTransaction(Effect.gen(function*() {
      const tickets = (yield* sql<{ id: string }>`SELECT id FROM tickets WHERE owner_id IN ${users}`).map((r) => r.id)
      const messages = (yield* sql<{ id: string }>`SELECT id FROM messages WHERE author_id IN ${users}
        ${tickets.length > 0 ? sql`OR ticket_id IN ${sql.in(tickets)}` : sql``}`).map((r) => r.id)
      const entities = [...userIds, ...tickets, ...messages]
      yield* sql`DELETE FROM outbox WHERE envelope->'payload'->>'id' IN ${sql.in(entities)}`
      yield* sql`DELETE FROM audit_log WHERE actor_id IN ${users} OR entity_id IN ${sql.in(entities)}`
      if (messages.length > 0) yield* sql`DELETE FROM messages WHERE id IN ${sql.in(messages)}`
      yield* sql`UPDATE tickets SET assignee_id = NULL WHERE assignee_id IN ${users}`
      yield* sql`DELETE FROM tickets WHERE owner_id IN ${users}`
      yield* sql`DELETE FROM users WHERE id IN ${users}`
    }))
  }).pipe(Effect.orDie)

/** A scoped set of test users, removed (with all they caused) when the scope closes. */
export const makeFixtures = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tokens = yield* Tokens
  const created: Array<string> = []
  yield* Effect.addFinalizer(() => cleanupUsers(created))

  const user = (role: Role, name = `${role}_${suffix()}`) =>
    Effect.gen(function*() {
      const hash = yield* knownHash
      const [row] = yield* sql<{ id: string }>`INSERT INTO users (username, password_hash, role)
        VALUES (${name}, ${hash}, ${role}) RETURNING id`
      created.push(row!.id)
      const { accessToken } = yield* tokens.issue({ id: row!.id, username: name, role, tokenVersion: 0 })
      const testUser: TestUser = { id: row!.id, username: name, role, token: accessToken }
      return testUser
    }).pipe(Effect.orDie)

  /** Cleans up a user the test created some other way (e.g. through POST /v1/users). */
  const track = (userId: string) => Effect.sync(() => void created.push(userId))

  return { user, track } as const
})

export const outboxRows = (entityId: string, eventType?: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ eventId: string; eventType: string; envelope: unknown; publishedAt: Date | null }>`
      SELECT event_id, event_type, envelope, published_at FROM outbox
      WHERE envelope->'payload'->>'id' = ${entityId}
      ${eventType === undefined ? sql`` : sql`AND event_type = ${eventType}`}
      ORDER BY id`
  ).pipe(Effect.orDie)

export const auditRows = (entityId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ actorId: string | null; action: string; entity: string; entityId: string; changes: unknown }>`
      SELECT actor_id, action, entity, entity_id, changes FROM audit_log WHERE entity_id = ${entityId} ORDER BY id`
  ).pipe(Effect.orDie)
