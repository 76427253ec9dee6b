/**
 * The HS256 secrets tokens are signed and verified with.
 *
 * JWT_SECRET when it is set (src/Config.ts has already refused a short or
 * published one). Otherwise the secret this installation generated on its
 * first start: 256 random bits kept in the database (table `jwt_secret`,
 * migration 0004), so every API instance on the database finds the same key
 * and no two installations share one. Two instances starting together both
 * try to insert theirs; the first insert wins and both read the winner.
 *
 * JWT_SECRET_PREVIOUS, when set, verifies tokens signed before a rotation; it
 * never signs. The SQL is here rather than in Repo.ts: it runs once, at
 * start-up, before any repository is needed.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { JwtConfig } from "../Config.js"
import { traced } from "../Observability/Span.js"

export interface Secrets {
  /** Signs every token, and verifies. */
  readonly current: Redacted.Redacted
  /** Verifies only: the secret before a rotation, while its tokens are alive. */
  readonly previous: Option.Option<Redacted.Redacted>
}

export class JwtSecrets extends Context.Tag("OpsDesk/Auth/JwtSecrets")<JwtSecrets, Secrets>() {}

/** Bytes of randomness in a generated secret (stored as hex). */
const GENERATED_BYTES = 32

/** This installation's generated secret: created (and logged, never its value) on the first start, read after. */
export const storedSecret = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const candidate = randomBytes(GENERATED_BYTES).toString("hex")
  const inserted = yield* sql`INSERT INTO jwt_secret (secret) VALUES (${candidate})
    ON CONFLICT (id) DO NOTHING RETURNING id`
  const rows = yield* sql<{ readonly secret: string; readonly createdAt: Date }>`SELECT secret, created_at
    FROM jwt_secret`
  const row = rows[0]
  // Deleted between the two statements by an operator rotating it: the next start generates again.
  if (row === undefined) return yield* Effect.dieMessage("jwt_secret: the generated secret vanished during start-up")
  yield* inserted.length > 0
    ? Effect.logInfo(
      "JWT_SECRET is not set: generated a random signing secret for this installation and stored it in the database (table jwt_secret)"
    )
    : Effect.logInfo(
      `JWT_SECRET is not set: using this installation's signing secret from the database (generated ${row.createdAt.toISOString()})`
    )
  return Redacted.make(row.secret)
}).pipe(Effect.orDie, traced("Auth.storedSecret"))

/** JWT_SECRET, else the stored one; and JWT_SECRET_PREVIOUS. */
export const resolveSecrets = Effect.gen(function*() {
  const { previous, secret } = yield* JwtConfig
  const current = Option.isSome(secret) ? secret.value : yield* storedSecret
  if (Option.isSome(previous)) {
    yield* Effect.logInfo(
      "JWT_SECRET_PREVIOUS is set: tokens signed with it are still accepted; unset it once they have expired (JWT_EXPIRES_IN_SECONDS after the rotation)"
    )
  }
  return { current, previous } satisfies Secrets
})

/** The secret tokens are signed with (JWT_SECRET, or the one generated for this installation). */
export const resolveSecret = Effect.map(resolveSecrets, ({ current }) => Redacted.value(current))

export const JwtSecretsLive = Layer.effect(JwtSecrets, resolveSecrets)

/** Fixed secrets (tests, tools): no configuration, no database. */
export const jwtSecrets = (current: string, previous?: string) =>
  Layer.succeed(
    JwtSecrets,
    JwtSecrets.of({
      current: Redacted.make(current),
      previous: previous === undefined ? Option.none() : Option.some(Redacted.make(previous))
    })
  )
