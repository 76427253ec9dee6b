/**
 * Bearer tokens this process let in lately, for the HTTP front cache
 * (App/FrontCache.ts). The Authentication middleware (Http.ts) records every
 * token it admits, for AUTH_USER_CACHE_MS (Identity's own window for a user
 * row) and never past the token's `exp`; Identity's `forget` (a logout, a
 * password, role or activation change made through this process) drops the
 * user's tokens at once. The front cache answers only a token found here, so
 * it lets in nobody the middleware would not have let in, and a change made
 * through another instance reaches it at most 2 × AUTH_USER_CACHE_MS later
 * (the row's age in Identity's cache, then this). AUTH_USER_CACHE_MS=0
 * records nothing: every request then goes the whole way.
 *
 * Each user also has a change count here (`epochOf`), bumped by `forgetUser`:
 * what was read about a user before a change that happened meanwhile (an
 * admission whose check began before a logout, a row Identity was reading)
 * is dropped instead of being kept for the window.
 */
import { Duration, Effect } from "effect"
import { LRUCache } from "lru-cache"
import { createHash } from "node:crypto"
import { AuthUserCacheConfig } from "../Config.js"

export interface Admission {
  readonly userId: string
  /** A digest of the token (SHA-256, base64url): what caches may key on, never the token itself. */
  readonly digest: string
  /** `Date.now()` after which the token must go through the middleware again. */
  readonly until: number
}

export class Admissions extends Effect.Service<Admissions>()("OpsDesk/Auth/Admissions", {
  effect: Effect.gen(function*() {
    const { capacity, ttl } = yield* AuthUserCacheConfig
    const windowMs = Duration.toMillis(ttl)
    const entries = new LRUCache<string, Admission>({ max: capacity })
    const changes = new LRUCache<string, number>({ max: capacity })

    /** How many times this process changed the user (`forgetUser`). */
    const epochOf = (userId: string): number => changes.get(userId) ?? 0

    /**
     * Records a token the middleware let in as `userId`, checked from `epoch`
     * (`epochOf` when the check began) on; `exp` in seconds since the epoch.
     * Nothing is recorded when the user changed during the check.
     */
    const admit = (token: string, userId: string, exp: number, epoch: number): void => {
      if (windowMs === 0 || epochOf(userId) !== epoch) return
      const now = Date.now()
      const until = Math.min(now + windowMs, exp * 1000)
      const known = entries.get(token)
      entries.set(token, {
        userId,
        digest: known !== undefined && known.userId === userId
          ? known.digest
          : createHash("sha256").update(token).digest("base64url"),
        until
      })
    }

    /** The admission of a token let in within its window, else `undefined` (then it goes the whole way). */
    const find = (token: string): Admission | undefined => {
      const found = entries.get(token)
      if (found === undefined) return undefined
      if (found.until <= Date.now()) {
        entries.delete(token)
        return undefined
      }
      return found
    }

    /** Drops every token of a user this process just changed (Identity.forget), and counts the change. */
    const forgetUser = (userId: string): void => {
      changes.set(userId, epochOf(userId) + 1)
      const tokens = [...entries.entries()].filter(([, admission]) => admission.userId === userId)
      for (const [token] of tokens) entries.delete(token)
    }

    return { admit, epochOf, find, forgetUser } as const
  })
}) {}
