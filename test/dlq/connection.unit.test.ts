/**
 * The DLQ service's lazily opened, idle-closed connection (src/Broker/LazyConnection.ts),
 * with a fake connection and the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import type { ChannelModel } from "amqplib"
import { Effect, Exit, Scope, TestClock } from "effect"
import { EventEmitter } from "node:events"
import { makeLazyConnection } from "../../src/Broker/LazyConnection.js"

class FakeConnection extends EventEmitter {
  closed = false
  close() {
    this.closed = true
    this.emit("close")
    return Promise.resolve()
  }
}

const setup = Effect.gen(function*() {
  const opened: Array<FakeConnection> = []
  const owner = yield* Scope.make()
  const pool = yield* makeLazyConnection({
    open: Effect.acquireRelease(
      Effect.sync(() => {
        const c = new FakeConnection()
        opened.push(c)
        return c as unknown as ChannelModel
      }),
      (c) => Effect.promise(() => c.close())
    ),
    idleTimeToLive: "1 minute"
  }).pipe(Scope.extend(owner))
  /** One operation: lease, run, release. */
  const use = Effect.scoped(
    Effect.flatMap(pool.lease, (lease) => Effect.succeed(lease.connection as unknown as FakeConnection))
  )
  return { opened, owner, pool, use }
})

// Lets forked idle timers start (and register their sleep) before the clock moves.
const settle = Effect.repeatN(Effect.yieldNow(), 10)

describe("LazyConnection", () => {
  it.effect("opens on first use, reuses while in use or recently used, closes after the idle time", () =>
    Effect.gen(function*() {
      const { opened, pool, use } = yield* setup
      expect(opened).toHaveLength(0)
      expect(yield* pool.isOpen).toBe(false)

      const first = yield* use
      expect(yield* use).toBe(first)
      yield* settle
      yield* TestClock.adjust("30 seconds")
      // A use restarts the idle time.
      expect(yield* use).toBe(first)
      yield* settle
      yield* TestClock.adjust("45 seconds")
      expect(first.closed).toBe(false)
      yield* TestClock.adjust("15 seconds")
      yield* settle
      expect(first.closed).toBe(true)
      expect(yield* pool.isOpen).toBe(false)

      const second = yield* use
      expect(second).not.toBe(first)
      expect(opened).toHaveLength(2)
    }))

  it.effect("never closes a connection while a lease holds it", () =>
    Effect.gen(function*() {
      const { pool } = yield* setup
      const scope = yield* Scope.make()
      const lease = yield* pool.lease.pipe(Scope.extend(scope))
      yield* TestClock.adjust("10 minutes")
      yield* settle
      expect((lease.connection as unknown as FakeConnection).closed).toBe(false)
      yield* Scope.close(scope, Exit.void)
      yield* settle
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect((lease.connection as unknown as FakeConnection).closed).toBe(true)
    }))

  it.effect("a connection that dropped, or was invalidated, is replaced on the next use", () =>
    Effect.gen(function*() {
      const { opened, pool, use } = yield* setup
      const first = yield* use
      first.emit("close")
      expect(yield* pool.isOpen).toBe(false)
      const second = yield* use
      expect(second).not.toBe(first)

      // Invalidated while another lease still uses it: replaced at once, closed when its last user is done.
      const scope = yield* Scope.make()
      const held = yield* pool.lease.pipe(Scope.extend(scope))
      yield* held.invalidate
      const third = yield* use
      expect(third).not.toBe(second)
      expect(opened).toHaveLength(3)
      yield* Scope.close(scope, Exit.void)
      expect(second.closed).toBe(true)
      expect(third.closed).toBe(false)
    }))

  it.effect("closing the owner closes the connection; later leases fail", () =>
    Effect.gen(function*() {
      const { owner, pool, use } = yield* setup
      const c = yield* use
      yield* Scope.close(owner, Exit.void)
      expect(c.closed).toBe(true)
      const error = yield* Effect.flip(use)
      expect(error.message).toContain("shut down")
      expect(yield* pool.isOpen).toBe(false)
    }))
})
