/**
 * Throttling of failed logins: slows password guessing without letting
 * anyone lock a user out.
 *
 * Three counters of recent failures per attempt:
 * - the (username, client) pair, the client being the address (an IPv6
 *   address's /64, Address.ts): its `maxFailures`-th failure locks that pair,
 *   so the guesser's client is refused while the user, from anywhere else,
 *   still logs in;
 * - the client alone (one client spraying a password over many usernames):
 *   a higher threshold, since many users may share an address;
 * - the username from any client (a guess spread over many addresses): never
 *   a lock, only a delay — once it has `userDelayAfter` recent failures, each
 *   attempt for it first waits `userDelayBaseMs`, doubling with each further
 *   failure up to `userDelayMaxMs` — so a distributed guesser is slowed and
 *   the user still gets in. Usernames are counted whether they exist or not,
 *   so the throttle does not reveal which do.
 *
 * An attempt is counted as a failure when it is admitted — check and count
 * are one atomic step, so a burst of concurrent guesses cannot all slip in
 * before the first one fails — and taken back if it succeeds or ends without
 * an answer on the password (with the lock it set, if any). A count is
 * forgotten `windowSeconds` after the last one. A lock lasts
 * `lockoutBaseSeconds`, each further failure's twice as long as the one
 * before, up to `lockoutMaxSeconds`. While locked, every login for it is
 * answered 429 without checking the password — the right one too, so a guess
 * learns nothing — and nothing is counted, so a lock always ends. A
 * successful login resets its pair's counter; the client and the username
 * keep their counts of earlier failures (a client with one valid account must
 * not wipe its record between guesses at others, nor the user the record of
 * the guesses against them).
 *
 * Counters live in Redis (atomic Lua scripts, one round trip per step, keys
 * expire on their own). When Redis is unreachable the throttle falls back to a
 * bounded in-memory map with the same rules, so the API keeps answering
 * logins. The counting is hand-written rather than rate-limiter-flexible: that library counts
 * one key per call, so the three counters could not be checked and counted
 * in one atomic step, and it has no growing lock nor per-attempt refund.
 */
import { Clock, Context, Duration, Effect, Layer } from "effect"
import { LRUCache } from "lru-cache"
import { LoginThrottleConfig } from "../Config.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { Redis, type RedisError } from "../Store/Redis.js"
import { clientOf, UNKNOWN_CLIENT } from "./Address.js"
import { TooManyAttempts } from "./Errors.js"

export interface LoginAttempt {
  readonly username: string
  /** The client's address; `undefined` when the transport does not tell. */
  readonly ip: string | undefined
}

/** An admitted attempt; exactly one of `succeeded` / `abandoned` settles it (or neither, for a wrong password). */
export interface Admitted {
  /** The client the attempt was counted for (Address.ts). */
  readonly client: string
  /** Wait this long before checking the password: the username's recent failures (zero when few). */
  readonly delay: Duration.Duration
  /** The password was right: the pair's counter is reset, the client's and username's counts of this attempt taken back. */
  readonly succeeded: Effect.Effect<void>
  /** The attempt ended without an answer on the password (a 5xx, a disconnect, no room to check it): its counts are taken back. */
  readonly abandoned: Effect.Effect<void>
}

export class LoginThrottle extends Context.Tag("OpsDesk/Auth/LoginThrottle")<LoginThrottle, {
  /**
   * Admits an attempt, counting it as a failure until it is settled
   * otherwise; fails with TooManyAttempts (counting nothing) while its
   * (username, client) pair or its client is locked. Check and count are one
   * atomic step, so concurrent guesses cannot all slip in before the first is
   * counted.
   */
  readonly begin: (attempt: LoginAttempt) => Effect.Effect<Admitted, TooManyAttempts>
}>() {}

export interface Counter {
  readonly failKey: string
  readonly lockKey: string
  /** The failures that lock it; 0: counted, never locked. */
  readonly threshold: number
}

/** Lockout set by the `failures`-th counted attempt, in seconds (0: none). */
export const lockoutSeconds = (cfg: LoginThrottleConfig, failures: number, threshold: number): number =>
  threshold === 0 || failures < threshold
    ? 0
    : Math.min(cfg.lockoutBaseSeconds * 2 ** Math.min(failures - threshold, 30), cfg.lockoutMaxSeconds)

/** The wait before checking an attempt that is the username's `failures`-th counted one (in ms; 0: none). */
export const userDelayMillis = (cfg: LoginThrottleConfig, failures: number): number => {
  const before = failures - 1
  return before < cfg.userDelayAfter
    ? 0
    : Math.min(cfg.userDelayBaseMs * 2 ** Math.min(before - cfg.userDelayAfter, 30), cfg.userDelayMaxMs)
}

/**
 * What `begin` found: the longest lock in force (ms, 0 if none); else, per
 * counter, whether this attempt locked it and its failures counting this one.
 */
export interface Begun {
  readonly lockedForMs: number
  readonly setLocks: ReadonlyArray<boolean>
  readonly failures: ReadonlyArray<number>
}

/** The storage behind the throttle: Redis, or memory while Redis is away. */
interface Store<E> {
  /** When nothing is locked, counts the attempt on every counter (locking those that reach their threshold). */
  readonly begin: (counters: ReadonlyArray<Counter>) => Effect.Effect<Begun, E>
  /** Takes one counted attempt back, and lifts the locks that attempt set (`setLocks`, per counter). */
  readonly refund: (counters: ReadonlyArray<Counter>, setLocks: ReadonlyArray<boolean>) => Effect.Effect<void, E>
  readonly reset: (counter: Counter) => Effect.Effect<void, E>
}

const keysOf = (counters: ReadonlyArray<Counter>) => counters.flatMap((c) => [c.failKey, c.lockKey])

// KEYS: fail1, lock1, fail2, lock2, ...; ARGV: base, cap, window, threshold1, threshold2, ...
// Returns { longest lock in ms } when locked, else { 0, set1, failures1, set2, failures2, ... }
// (set: 1 where this attempt set the lock).
const BEGIN = `
local longest = 0
for i = 2, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > longest then longest = ttl end
end
if longest > 0 then return { longest } end
local base, cap, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local result = { 0 }
for i = 1, #KEYS, 2 do
  local threshold = tonumber(ARGV[3 + (i + 1) / 2])
  local failures = redis.call('INCR', KEYS[i])
  local lock = 0
  if threshold > 0 and failures >= threshold then
    lock = math.floor(math.min(base * 2 ^ math.min(failures - threshold, 30), cap))
    redis.call('SET', KEYS[i + 1], '1', 'EX', lock)
  end
  redis.call('EXPIRE', KEYS[i], window + lock)
  result[#result + 1] = lock > 0 and 1 or 0
  result[#result + 1] = failures
end
return result`

// KEYS: fail1, lock1, ...; ARGV: 1 where the refunded attempt set that counter's lock.
const REFUND = `
for i = 1, #KEYS, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
  if ARGV[(i + 1) / 2] == '1' then redis.call('DEL', KEYS[i + 1]) end
end
return 1`

const redisStore = (redis: Context.Tag.Service<Redis>, cfg: LoginThrottleConfig): Store<RedisError> => ({
  begin: (counters) =>
    redis.use((c) =>
      c.eval(
        BEGIN,
        counters.length * 2,
        ...keysOf(counters),
        cfg.lockoutBaseSeconds,
        cfg.lockoutMaxSeconds,
        cfg.windowSeconds,
        ...counters.map((k) => k.threshold)
      ) as Promise<Array<number>>
    ).pipe(Effect.map(([lockedForMs = 0, ...rest]): Begun => ({
      lockedForMs,
      setLocks: rest.filter((_, i) => i % 2 === 0).map((s) => s === 1),
      failures: rest.filter((_, i) => i % 2 === 1)
    }))),
  refund: (counters, setLocks) =>
    counters.length === 0
      ? Effect.void
      : redis.use((c) =>
        c.eval(REFUND, counters.length * 2, ...keysOf(counters), ...setLocks.map((s) => (s ? "1" : "0")))
      ).pipe(
        Effect.asVoid
      ),
  reset: (counter) => redis.use((c) => c.del(counter.failKey, counter.lockKey)).pipe(Effect.asVoid)
})

/** Most counters the in-memory fallback keeps; the least recently used go first beyond it. */
const MEMORY_LIMIT = 10_000

interface MemoryEntry {
  readonly failures: number
  /** Epoch ms after which the counter is forgotten. */
  readonly expiresAt: number
  /** Epoch ms until which its key is locked. */
  readonly lockedUntil: number
}

/**
 * The Redis scripts' rules over an LRU map (lru-cache, keyed by fail key), for when Redis is away. Expiry is kept
 * in the entries rather than as lru-cache TTLs, so it follows Effect's Clock like the rest of the throttle.
 */
export const memoryStore = (cfg: LoginThrottleConfig): Store<never> => {
  const entries = new LRUCache<string, MemoryEntry>({ max: MEMORY_LIMIT })
  const live = (key: string, now: number) => {
    const entry = entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt > now) return entry
    entries.delete(key)
    return undefined
  }
  const put = (key: string, entry: MemoryEntry) => void entries.set(key, entry)
  return {
    begin: (counters) =>
      Effect.map(Clock.currentTimeMillis, (now): Begun => {
        const lockedForMs = Math.max(0, ...counters.map((c) => (live(c.failKey, now)?.lockedUntil ?? 0) - now))
        if (lockedForMs > 0) return { lockedForMs, setLocks: [], failures: [] }
        const counted = counters.map((counter) => {
          const failures = (live(counter.failKey, now)?.failures ?? 0) + 1
          const lock = lockoutSeconds(cfg, failures, counter.threshold)
          put(counter.failKey, {
            failures,
            expiresAt: now + (cfg.windowSeconds + lock) * 1000,
            lockedUntil: lock > 0 ? now + lock * 1000 : 0
          })
          return { set: lock > 0, failures }
        })
        return { lockedForMs: 0, setLocks: counted.map((c) => c.set), failures: counted.map((c) => c.failures) }
      }),
    refund: (counters, setLocks) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        counters.forEach((counter, i) => {
          const entry = live(counter.failKey, now)
          if (entry === undefined) return
          entries.set(counter.failKey, {
            ...entry,
            failures: Math.max(0, entry.failures - 1),
            lockedUntil: setLocks[i] === true ? 0 : entry.lockedUntil
          })
        })
      }),
    reset: (counter) => Effect.sync(() => void entries.delete(counter.failKey))
  }
}

/**
 * The counters of an attempt, in this order: the (username, client) pair,
 * the username, and the client when its address is known. The pair's key puts
 * the client first: a client never contains `|`, so no two pairs share a key.
 */
export const countersOf = (cfg: LoginThrottleConfig, username: string, client: string): ReadonlyArray<Counter> => {
  const pair: Counter = {
    failKey: `${cfg.keyPrefix}fail:pair:${client}|${username}`,
    lockKey: `${cfg.keyPrefix}lock:pair:${client}|${username}`,
    threshold: cfg.maxFailures
  }
  const user: Counter = {
    failKey: `${cfg.keyPrefix}fail:name:${username}`,
    lockKey: `${cfg.keyPrefix}lock:name:${username}`,
    threshold: 0
  }
  if (client === UNKNOWN_CLIENT) return [pair, user]
  return [pair, user, {
    failKey: `${cfg.keyPrefix}fail:ip:${client}`,
    lockKey: `${cfg.keyPrefix}lock:ip:${client}`,
    threshold: cfg.maxFailuresPerIp
  }]
}

export const make = (cfg: LoginThrottleConfig) =>
  Effect.gen(function*() {
    const redis = yield* Redis
    const primary = redisStore(redis, cfg)
    const fallback = memoryStore(cfg)

    const warning = rateLimitedWarning()
    const warn = (e: RedisError) => warning.warn(`Login throttle: Redis unavailable, counting in memory: ${e.message}`)
    /** Redis first; with Redis away, the in-memory store answers. */
    const withFallback = <A>(f: <E>(store: Store<E>) => Effect.Effect<A, E>): Effect.Effect<A> =>
      f(primary).pipe(Effect.catchAll((e) => Effect.zipRight(warn(e), f(fallback))))

    return LoginThrottle.of({
      begin: (attempt) => {
        const client = clientOf(attempt.ip)
        const counters = countersOf(cfg, attempt.username, client)
        const [pair, ...others] = counters
        return withFallback((store) => store.begin(counters)).pipe(
          Effect.flatMap(({ failures, lockedForMs, setLocks }): Effect.Effect<Admitted, TooManyAttempts> => {
            if (lockedForMs > 0) {
              const retryAfterSeconds = Math.max(1, Math.ceil(lockedForMs / 1000))
              return Effect.fail(
                new TooManyAttempts({
                  message: `Too many failed logins; try again in ${retryAfterSeconds} s`,
                  retryAfterSeconds
                })
              )
            }
            return Effect.succeed({
              client,
              delay: Duration.millis(userDelayMillis(cfg, failures[1] ?? 0)),
              succeeded: withFallback((store) =>
                Effect.zipRight(store.reset(pair!), store.refund(others, setLocks.slice(1)))
              ),
              abandoned: withFallback((store) => store.refund(counters, setLocks))
            })
          })
        )
      }
    })
  })

export const LoginThrottleLive = Layer.effect(LoginThrottle, Effect.flatMap(LoginThrottleConfig, make))
