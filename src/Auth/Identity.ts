/**
 * Who the caller of a verified token is, from the `users` table, for every
 * authenticated request (the Authentication middleware, Http.ts): the user
 * must exist and be active, the role is the database's, and the token's `ver`
 * must equal the user's `token_version`. Bumping that version (logout, a
 * password change or reset, a role change, deactivation, reactivation) ends
 * every older token at once.
 *
 * User rows are cached in process for AUTH_USER_CACHE_MS (default 1 s; 0
 * turns the cache off), at most AUTH_USER_CACHE_MAX of them, with Effect's
 * `Cache`. A change made through this process is seen at once (its writer
 * calls `forget`); one made through another instance (or by SQL) at most
 * AUTH_USER_CACHE_MS later. Since every change bumps the version, a token
 * newer than the cached row (a login elsewhere) means the row is stale: it is
 * read again rather than refusing the token. Failed lookups are not cached.
 */
import { Cache, Duration, Effect, Exit, Option } from "effect"
import { AuthUserCacheConfig } from "../Config.js"
import { Admissions } from "./Admissions.js"
import type { Actor } from "./CurrentUser.js"
import { Unauthorized } from "./Errors.js"
import { AuthRepo, type IdentityRow } from "./Repo.js"
import type { TokenClaims } from "./Tokens.js"

/** True if the row lets a token with these claims in. */
export const admits = (row: Option.Option<IdentityRow>, claims: TokenClaims): row is Option.Some<IdentityRow> =>
  Option.isSome(row) && row.value.active && row.value.tokenVersion === claims.version

export class Identity extends Effect.Service<Identity>()("OpsDesk/Auth/Identity", {
  effect: Effect.gen(function*() {
    const repo = yield* AuthRepo
    const admissions = yield* Admissions
    const { capacity, ttl } = yield* AuthUserCacheConfig
    // One answer for a deleted, deactivated or outdated token: a token's holder learns nothing more.
    const revoked = new Unauthorized({ message: "Access token revoked, or its user is no longer active" })

    // Each row with the user's change count when its read began (Admissions.epochOf): `Cache` stores a lookup's
    // result even when `invalidate` ran while it was in flight, so a row read before a change is known by its count.
    const cache = Duration.isZero(ttl) ? undefined : yield* Cache.makeWith({
      capacity,
      lookup: (userId: string) =>
        Effect.suspend(() => {
          const epoch = admissions.epochOf(userId)
          return Effect.map(repo.findIdentity(userId), (row) => ({ row, epoch }))
        }),
      timeToLive: Exit.match({ onFailure: () => Duration.zero, onSuccess: () => ttl })
    })

    const rowFor = (claims: TokenClaims): Effect.Effect<Option.Option<IdentityRow>> => {
      if (cache === undefined) return repo.findIdentity(claims.userId)
      const fresh = Effect.zipRight(cache.refresh(claims.userId), cache.get(claims.userId))
      return Effect.flatMap(cache.get(claims.userId), (cached) => {
        const stale = cached.epoch !== admissions.epochOf(claims.userId) ||
          (Option.isSome(cached.row) && cached.row.value.tokenVersion < claims.version)
        return Effect.map(stale ? fresh : Effect.succeed(cached), (entry) => entry.row)
      })
    }

    /** The caller of a token with these claims (verified by Tokens), or 401. */
    const resolve = (claims: TokenClaims): Effect.Effect<Actor, Unauthorized> =>
      Effect.flatMap(rowFor(claims), (row) =>
        admits(row, claims)
          ? Effect.succeed<Actor>({ id: row.value.id, username: row.value.username, role: row.value.role })
          : Effect.fail(revoked))

    /** Drops the cached row (and the admitted tokens) of a user this process just changed: its next request sees the change. */
    const forget = (userId: string): Effect.Effect<void> =>
      Effect.zipRight(
        Effect.sync(() => admissions.forgetUser(userId)),
        cache === undefined ? Effect.void : cache.invalidate(userId)
      )

    return { resolve, forget } as const
  }),
  dependencies: [AuthRepo.Default, Admissions.Default]
}) {}
