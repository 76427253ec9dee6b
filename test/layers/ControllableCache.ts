/**
 * The in-memory listing cache (`makeMemory` from src/Cache/TicketListCache.ts)
 * with Redis outages on demand: `failNextInvalidations(k)` makes the next k
 * `invalidateAll` calls fail with a RedisError. Counts the invalidations that
 * went through.
 */
import { Effect, Layer, Ref } from "effect"
import { RedisError } from "../../src/Store/Redis.js"
import { makeMemory, TicketListCache } from "../../src/Tickets/ListCache.js"

export class ControllableCache extends Effect.Service<ControllableCache>()("OpsDesk/Test/ControllableCache", {
  effect: Effect.gen(function*() {
    const inner = yield* makeMemory
    const failures = yield* Ref.make(0)
    const invalidations = yield* Ref.make(0)
    const invalidateAll = Ref.modify(failures, (n): [boolean, number] => (n > 0 ? [true, n - 1] : [false, 0])).pipe(
      Effect.flatMap((fail) =>
        fail
          ? Effect.fail(new RedisError({ cause: new Error("connect ECONNREFUSED 127.0.0.1:6379 (simulated)") }))
          : Effect.tap(inner.invalidateAll, () => Ref.update(invalidations, (n) => n + 1))
      )
    )
    return {
      cache: TicketListCache.of({ lookup: inner.lookup, invalidateAll }),
      failNextInvalidations: (k: number) => Ref.set(failures, k),
      invalidations: Ref.get(invalidations)
    } as const
  })
}) {}

/** Provides `TicketListCache` and the `ControllableCache` controls. */
export const ControllableCacheLayer = Layer.effect(TicketListCache, Effect.map(ControllableCache, (c) => c.cache)).pipe(
  Layer.provideMerge(ControllableCache.Default)
)
