/**
 * Access tokens: HS256 JWTs signed and verified with jose.
 *
 * The HMAC key is imported into WebCrypto once, at start-up, and reused for
 * every sign and verify (jose re-imports a raw byte secret on every call,
 * which halves verification throughput). Claims: `sub` (user id), `ver` (the
 * user's token version), `iss`, `iat`, `exp`, all required, and `exp - iat`
 * at most JWT_MAX_LIFETIME_SECONDS; `username` and `role` are informational
 * (who the caller is, and their role, come from the database: Identity.ts).
 * Only HS256 is accepted, so `alg: none` and tokens signed with any other
 * algorithm or key are rejected. The key is Secret.ts's (JWT_SECRET, or the
 * installation's generated one); JWT_SECRET_PREVIOUS verifies, never signs.
 *
 * Verified tokens are remembered by their exact string, for their remaining
 * lifetime, in a small LRU (as API gateways do): a client sends the same token
 * with every request, and a WebCrypto check costs about a third of a cached
 * listing's CPU. Only a token that passed every check is stored, and any change
 * to a token (a tampered signature or claim) changes the string, so it misses
 * and is verified in full. The expiry is checked again on every hit. Only the
 * claims are remembered, never whether the user is still active or their role.
 */
import { Effect, Option, Redacted } from "effect"
import { errors, jwtVerify, type JWTVerifyOptions, SignJWT } from "jose"
import { LRUCache } from "lru-cache"
import { webcrypto } from "node:crypto"
import { JwtConfig } from "../Config.js"
import type { Actor } from "./CurrentUser.js"
import { Unauthorized } from "./Errors.js"
import { JwtSecrets, JwtSecretsLive } from "./Secret.js"

const ISSUER = "opsdesk"
const ALGORITHMS = ["HS256"]
const REQUIRED_CLAIMS = ["sub", "ver", "iat", "exp"]
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** How far in the future `iat` may be (clocks of API instances differ a little); beyond, the lifetime cap could be stretched. */
const IAT_SKEW_SECONDS = 60

/** How many verified tokens are remembered (a few MB at most). */
export const VERIFIED_TOKEN_CACHE_SIZE = 10_000

/** What a verified token says; whether it still holds is the database's answer (Identity.ts). */
export interface TokenClaims {
  readonly userId: string
  /** `ver`: the user's token version when the token was issued. */
  readonly version: number
  /** `exp`, in seconds since the epoch. */
  readonly exp: number
}

/** Whom a token is issued to: the user as the database has them. */
export interface TokenSubject extends Actor {
  readonly tokenVersion: number
}

/** A least-recently-used map (lru-cache) of verified tokens, each kept until its `exp`. */
export const makeVerifiedCache = (capacity: number) => {
  const entries = new LRUCache<string, TokenClaims>({ max: capacity })
  return {
    /** The claims of a token verified before and not yet expired at `nowSeconds`. */
    get: (token: string, nowSeconds: number): TokenClaims | undefined => {
      const hit = entries.get(token)
      if (hit === undefined) return undefined
      // jose's rule: expired once `exp` <= now (no clock tolerance).
      if (hit.exp <= nowSeconds) {
        entries.delete(token)
        return undefined
      }
      return hit
    },
    set: (token: string, verified: TokenClaims): void => {
      entries.set(token, verified)
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

/** An HS256 key in WebCrypto, imported once. */
const importKey = (secret: Redacted.Redacted) =>
  Effect.promise(() =>
    webcrypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(Redacted.value(secret)),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"]
    )
  )

export class Tokens extends Effect.Service<Tokens>()("OpsDesk/Auth/Tokens", {
  effect: Effect.gen(function*() {
    const secrets = yield* JwtSecrets
    const { expiresInSeconds, maxLifetimeSeconds } = yield* JwtConfig
    // Tokens are signed with the current key only; the previous one (a rotation's overlap) only verifies.
    const key = yield* importKey(secrets.current)
    const previousKey = Option.getOrUndefined(yield* Effect.transposeOption(Option.map(secrets.previous, importKey)))
    /** With the current key; a signature that does not match it gets one more try with the previous key. */
    const verifySignature = (token: string, options: JWTVerifyOptions) =>
      jwtVerify(token, key, options).catch((e: unknown) =>
        previousKey !== undefined && e instanceof errors.JWSSignatureVerificationFailed
          ? jwtVerify(token, previousKey, options)
          : Promise.reject(e)
      )
    const invalid = new Unauthorized({ message: "Invalid or expired access token" })

    const issue = (user: TokenSubject): Effect.Effect<IssuedToken> =>
      Effect.promise(() =>
        new SignJWT({ username: user.username, role: user.role, ver: user.tokenVersion })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setSubject(user.id)
          .setIssuer(ISSUER)
          .setIssuedAt()
          .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
          .sign(key)
      ).pipe(Effect.map((accessToken) => ({ accessToken, tokenType: "Bearer" as const, expiresIn: expiresInSeconds })))

    const verified = makeVerifiedCache(VERIFIED_TOKEN_CACHE_SIZE)

    const verifyInFull = (token: string): Effect.Effect<TokenClaims, Unauthorized> =>
      Effect.tryPromise({
        // jose checks that the claims are present, and `exp` (and `iat`, if a number) against the clock.
        try: () => verifySignature(token, { algorithms: ALGORITHMS, issuer: ISSUER, requiredClaims: REQUIRED_CLAIMS }),
        catch: () => invalid
      }).pipe(
        Effect.flatMap(({ payload: { exp, iat, sub, ver } }) => {
          const now = Math.floor(Date.now() / 1000)
          if (
            typeof sub !== "string" || !UUID_RE.test(sub) || !Number.isSafeInteger(ver) || (ver as number) < 0 ||
            typeof exp !== "number" || typeof iat !== "number" || exp - iat > maxLifetimeSeconds ||
            iat > now + IAT_SKEW_SECONDS
          ) {
            return Effect.fail(invalid)
          }
          const claims: TokenClaims = { userId: sub.toLowerCase(), version: ver as number, exp }
          verified.set(token, claims)
          return Effect.succeed(claims)
        })
      )

    /** The claims of a valid token; who the caller is, is then Identity's question. */
    const verify = (token: string): Effect.Effect<TokenClaims, Unauthorized> =>
      Effect.suspend(() => {
        const claims = verified.get(token, Math.floor(Date.now() / 1000))
        return claims === undefined ? verifyInFull(token) : Effect.succeed(claims)
      })

    /**
     * The claims of a token that passed `verify` before and has not expired,
     * without any other work; `undefined` otherwise (then call `verify`).
     */
    const remembered = (token: string): TokenClaims | undefined => verified.get(token, Math.floor(Date.now() / 1000))

    return { issue, verify, remembered } as const
  }),
  dependencies: [JwtSecretsLive]
}) {}
