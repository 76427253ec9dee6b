/**
 * Redis through ioredis, as a scoped service: the client is closed with `quit`
 * when the layer is released. Commands fail fast when Redis is away (no offline
 * queue), so callers can fall back instead of hanging.
 */
import { Context, Data, Duration, Effect, Layer, Runtime } from "effect"
import { Redis as IORedis } from "ioredis"
import { RedisUrl } from "../Config.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"

export class RedisError extends Data.TaggedError("RedisError")<{ readonly cause: unknown }> {
  override get message() {
    return `Redis: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export class Redis extends Context.Tag("OpsDesk/Infra/Redis")<Redis, {
  readonly client: IORedis
  /** Runs one command with a bounded wait, mapping failures to RedisError. */
  readonly use: <A>(f: (client: IORedis) => Promise<A>) => Effect.Effect<A, RedisError>
  /**
   * In one round trip: the generation counter `counter` (`0` while unset) and
   * the entry `before + generation + after` under it (null when absent), as
   * bytes. The caches that a counter's bump ends (Tickets/ListCache.ts,
   * App/FrontCache.ts) read through this.
   */
  readonly lookupUnderGeneration: (counter: string, before: string, after: string) => Promise<[Buffer, Buffer | null]>
}>() {}

/**
 * The set of every key cached under generation `generation` of `counter`: the
 * caches add their entries to it, and an invalidation (Tickets/ListCache.ts
 * `invalidateAll`, in Lua: `KEYS[1] .. ':index:' .. g`) deletes them with it.
 */
export const generationIndexKey = (counter: string, generation: string) => `${counter}:index:${generation}`

const GENERATION_LOOKUP = `
local g = redis.call('GET', KEYS[1]) or '0'
return { g, redis.call('GET', ARGV[1] .. g .. ARGV[2]) }`

/** The scripted command's methods, which ioredis adds at run time (`defineCommand`). */
interface WithGenerationLookup {
  readonly opsdeskGenerationLookupBuffer: (
    counter: string,
    before: string,
    after: string
  ) => Promise<[Buffer, Buffer | null]>
}

/**
 * Each command's bound, enforced by ioredis itself (`commandTimeout`): an
 * Effect-level timeout forks a fiber per command and cost several times the
 * command on the API's cached-listing path.
 */
const COMMAND_TIMEOUT = Duration.seconds(2)

export const make = (url: string) =>
  Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new IORedis(url, {
          lazyConnect: false,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          connectTimeout: 2000,
          commandTimeout: Duration.toMillis(COMMAND_TIMEOUT),
          retryStrategy: (times) => Math.min(times * 200, 2000)
        })
      ),
      (client) =>
        Effect.promise(() => client.quit().catch(() => client.disconnect())).pipe(
          // A release is uninterruptible: without this the timeout could never end the wait for QUIT.
          Effect.interruptible,
          Effect.timeoutTo({ duration: "2 seconds", onTimeout: () => client.disconnect(), onSuccess: () => undefined })
        )
    )
    // ioredis emits 'error' on every failed reconnect; without a listener Node would crash.
    // Logged through this layer's runtime, so the process's logger (LOG_FORMAT) applies.
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const warning = rateLimitedWarning()
    client.on("error", (err: Error) => void runFork(warning.warn(`Redis connection error: ${err.message}`)))
    const use = <A>(f: (client: IORedis) => Promise<A>) =>
      Effect.tryPromise({ try: () => f(client), catch: (cause) => new RedisError({ cause }) })
    // ioredis sends it by its SHA (EVALSHA), and whole once more after a Redis restart or SCRIPT FLUSH.
    client.defineCommand("opsdeskGenerationLookup", { numberOfKeys: 1, lua: GENERATION_LOOKUP })
    const scripted = client as IORedis & WithGenerationLookup
    return Redis.of({
      client,
      use,
      lookupUnderGeneration: (counter, before, after) => scripted.opsdeskGenerationLookupBuffer(counter, before, after)
    })
  })

export const RedisLive = Layer.scoped(
  Redis,
  Effect.flatMap(RedisUrl, (url) => make(url))
)
