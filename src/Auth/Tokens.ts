/**
 * Access tokens: HS256 JWTs signed and verified with jose.
 *
 * The HMAC key is imported into WebCrypto once, at start-up, and reused for
 * every sign and verify (jose re-imports a raw byte secret on every call,
 * which halves verification throughput). Claims: `sub` (user id), `username`,
 * `role`, `iss`, `iat`, `exp`. Only HS256 is accepted, so `alg: none` and
 * tokens signed with any other algorithm or key are rejected.
 *
 * Verified tokens are remembered by their exact string, for their remaining
 * lifetime, in a small LRU (as API gateways do): a client sends the same token
 * with every request, and a WebCrypto check costs about a third of a cached
 * listing's CPU. Only a token that passed every check is stored, and any change
 * to a token (a tampered signature or claim) changes the string, so it misses
 * and is verified in full. The expiry is checked again on every hit.
 */
import { Data, Effect, Option, Redacted } from "effect"
import { jwtVerify, SignJWT } from "jose"
import { webcrypto } from "node:crypto"
import { DEFAULT_JWT_SECRET, JwtConfig, NodeEnv } from "../Config.js"
import type { Actor, Role } from "./CurrentUser.js"
import { Unauthorized } from "./Errors.js"

export class InsecureJwtSecret extends Data.TaggedError("InsecureJwtSecret")<{ readonly message: string }> {}

const ISSUER = "opsdesk"
const ALGORITHMS = ["HS256"]
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const isRole = (u: unknown): u is Role => u === "admin" || u === "agent" || u === "customer"

/** How many verified tokens are remembered (a few MB at most). */
export const VERIFIED_TOKEN_CACHE_SIZE = 10_000

interface Verified {
  readonly actor: Actor
  /** `exp`, in seconds since the epoch. */
  readonly exp: number
}

/**
 * A least-recently-used map of verified tokens: a Map keeps insertion order,
 * so a hit is moved to the end and the first key is the eviction candidate.
 */
export const makeVerifiedCache = (capacity: number) => {
  const entries = new Map<string, Verified>()
  return {
    /** The actor of a token verified before and not yet expired at `nowSeconds`. */
    get: (token: string, nowSeconds: number): Actor | undefined => {
      const hit = entries.get(token)
      if (hit === undefined) return undefined
      entries.delete(token)
      // jose's rule: expired once `exp` <= now (no clock tolerance).
      if (hit.exp <= nowSeconds) return undefined
      entries.set(token, hit)
      return hit.actor
    },
    set: (token: string, verified: Verified): void => {
      entries.delete(token)
      entries.set(token, verified)
      if (entries.size > capacity) entries.delete(entries.keys().next().value!)
    },
    get size() {
      return entries.size
    }
  }
}

export interface IssuedToken {
  readonly accessToken: string
  readonly tokenType: "Bearer"
  readonly expiresIn: number
}

/** Resolves the secret: required outside development, a loud default inside it. */
export const resolveSecret = Effect.gen(function*() {
  const env = yield* NodeEnv
  const { secret } = yield* JwtConfig
  const value = Option.getOrUndefined(Option.map(secret, Redacted.value))
  const unusable = value === undefined || value.length === 0 || value === DEFAULT_JWT_SECRET
  if (!unusable) return value
  if (env === "production") {
    return yield* new InsecureJwtSecret({
      message: "JWT_SECRET must be set to a non-default value when NODE_ENV=production; refusing to start"
    })
  }
  yield* Effect.logWarning("JWT_SECRET is not set: using the development default secret (never do this in production)")
  return DEFAULT_JWT_SECRET
})

export class Tokens extends Effect.Service<Tokens>()("OpsDesk/Auth/Tokens", {
  effect: Effect.gen(function*() {
    const secret = yield* resolveSecret
    const { expiresInSeconds } = yield* JwtConfig
    const key = yield* Effect.promise(() =>
      webcrypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
        "sign",
        "verify"
      ])
    )
    const invalid = new Unauthorized({ message: "Invalid or expired access token" })

    const issue = (user: Actor): Effect.Effect<IssuedToken> =>
      Effect.promise(() =>
        new SignJWT({ username: user.username, role: user.role })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setSubject(user.id)
          .setIssuer(ISSUER)
          .setIssuedAt()
          .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
          .sign(key)
      ).pipe(Effect.map((accessToken) => ({ accessToken, tokenType: "Bearer" as const, expiresIn: expiresInSeconds })))

    const verified = makeVerifiedCache(VERIFIED_TOKEN_CACHE_SIZE)

    const verifyInFull = (token: string): Effect.Effect<Actor, Unauthorized> =>
      Effect.tryPromise({
        try: () => jwtVerify(token, key, { algorithms: ALGORITHMS, issuer: ISSUER }),
        catch: () => invalid
      }).pipe(
        Effect.flatMap(({ payload }) => {
          if (
            typeof payload.sub !== "string" || !UUID_RE.test(payload.sub) || typeof payload.username !== "string" ||
            !isRole(payload.role)
          ) {
            return Effect.fail(invalid)
          }
          const actor: Actor = { id: payload.sub, username: payload.username, role: payload.role }
          // Ours always expire; one without `exp` is still accepted, as before, but not remembered.
          if (typeof payload.exp === "number") verified.set(token, { actor, exp: payload.exp })
          return Effect.succeed(actor)
        })
      )

    const verify = (token: string): Effect.Effect<Actor, Unauthorized> =>
      Effect.suspend(() => {
        const actor = verified.get(token, Math.floor(Date.now() / 1000))
        return actor === undefined ? verifyInFull(token) : Effect.succeed(actor)
      })

    /**
     * The actor of a token that passed `verify` before and has not expired,
     * without any other work; `undefined` otherwise (then call `verify`).
     */
    const remembered = (token: string): Actor | undefined => verified.get(token, Math.floor(Date.now() / 1000))

    return { issue, verify, remembered } as const
  })
}) {}
