/**
 * Cached ticket listings in Redis, per caller scope and query.
 *
 * Keys are `tickets:list:<generation>:<scope>:<query>`. The API reads the
 * generation together with the entry (one round trip) and stores a miss under
 * the generation it read *before* querying the database. Invalidation bumps
 * the generation and deletes the retired generation's keys, so a listing
 * computed from data older than the invalidation can never be served after it,
 * even if it is written late.
 */
import { Context, Effect, Layer, Option, Ref } from "effect"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { generationIndexKey, Redis, type RedisError } from "../Store/Redis.js"

export interface CacheLookup {
  /** The stored JSON as bytes, sent as they are (no decode and re-encode of ~8 KB per hit). */
  readonly hit: Option.Option<Uint8Array>
  /** Stores a freshly computed value under the generation read by the lookup. */
  readonly store: (value: string) => Effect.Effect<void>
}

export class TicketListCache extends Context.Tag("OpsDesk/Cache/TicketListCache")<TicketListCache, {
  /** Never fails: with Redis away it is a miss whose store does nothing. */
  readonly lookup: (scope: string, query: string) => Effect.Effect<CacheLookup>
  /** Drops every cached listing; returns how many keys were removed. */
  readonly invalidateAll: Effect.Effect<number, RedisError>
}>() {}

export const GENERATION_KEY = "tickets:list:generation"
export const KEY_PREFIX = "tickets:list:"
const entryKey = (generation: string, scope: string, query: string) => `${KEY_PREFIX}${generation}:${scope}:${query}`

const INVALIDATE = `
local g = redis.call('GET', KEYS[1]) or '0'
redis.call('INCR', KEYS[1])
local idx = KEYS[1] .. ':index:' .. g
local keys = redis.call('SMEMBERS', idx)
local removed = 0
for i = 1, #keys, 500 do
  removed = removed + redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('DEL', idx)
return removed`

export const makeRedis = (ttlSeconds: number) =>
  Effect.gen(function*() {
    const redis = yield* Redis
    const warning = rateLimitedWarning()
    const warn = (e: RedisError) =>
      warning.warn(`Ticket list cache unavailable, serving from the database: ${e.message}`)
    const miss = (store: CacheLookup["store"]): CacheLookup => ({ hit: Option.none(), store })
    return TicketListCache.of({
      lookup: (scope, query) =>
        redis.use(() => redis.lookupUnderGeneration(GENERATION_KEY, KEY_PREFIX, `:${scope}:${query}`)).pipe(
          Effect.map(([generationBytes, value]): CacheLookup => ({
            hit: Option.fromNullable(value),
            store: (v) => {
              const generation = generationBytes.toString()
              const key = entryKey(generation, scope, query)
              return redis.use((c) =>
                c.multi().set(key, v, "EX", ttlSeconds).sadd(generationIndexKey(GENERATION_KEY, generation), key)
                  .expire(
                    generationIndexKey(GENERATION_KEY, generation),
                    ttlSeconds * 2
                  ).exec()
              ).pipe(Effect.catchAll(warn))
            }
          })),
          Effect.catchAll((e) => Effect.as(warn(e), miss(() => Effect.void)))
        ),
      invalidateAll: redis.use((c) => c.eval(INVALIDATE, 1, GENERATION_KEY) as Promise<number>)
    })
  })

export const TicketListCacheLive = (ttlSeconds = 60) => Layer.effect(TicketListCache, makeRedis(ttlSeconds))

/** In-memory double for unit tests; counts invalidations. */
export const makeMemory = Effect.gen(function*() {
  const state = yield* Ref.make({ generation: 0, entries: new Map<string, string>() })
  return TicketListCache.of({
    lookup: (scope, query) =>
      Ref.get(state).pipe(Effect.map(({ entries, generation }) => ({
        hit: Option.map(Option.fromNullable(entries.get(`${scope}:${query}`)), (v) => Buffer.from(v)),
        store: (v: string) =>
          Ref.update(state, (s) => {
            if (s.generation !== generation) return s
            const entries = new Map(s.entries)
            entries.set(`${scope}:${query}`, v)
            return { ...s, entries }
          })
      }))),
    invalidateAll: Ref.modify(state, (s) => [s.entries.size, { generation: s.generation + 1, entries: new Map() }])
  })
})
export const TicketListCacheMemory = Layer.effect(TicketListCache, makeMemory)
