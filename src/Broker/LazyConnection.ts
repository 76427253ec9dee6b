/**
 * One AMQP connection shared by the operations of a long-lived service (the
 * DLQ tools), opened on first use and closed again after `idleTimeToLive`
 * without users: a service nobody calls holds no connection, a dashboard that
 * polls reuses one.
 *
 * A connection that dropped (the broker restarted between two calls, say) is
 * noticed through its 'close' event and replaced on the next lease; `invalidate`
 * lets a caller that found it unusable (a channel would not open) force the
 * same. Unlike `RcRef`, a lease of a replaced connection never leaks it: the
 * last user of a retired connection closes it.
 */
import type { ChannelModel } from "amqplib"
import { type Duration, Effect, Exit, Scope } from "effect"
import { BrokerError } from "./Amqp.js"

interface Held {
  readonly connection: ChannelModel
  readonly scope: Scope.CloseableScope
  alive: boolean
  retired: boolean
  users: number
  /** Bumped on every lease and release; an idle timer only closes the connection it was started for. */
  epoch: number
}

export interface Lease {
  readonly connection: ChannelModel
  /** Marks the connection unusable: the next lease opens a new one. */
  readonly invalidate: Effect.Effect<void>
}

export interface LazyConnection<E> {
  /** A connection for the current scope; released (not closed) when the scope closes. */
  readonly lease: Effect.Effect<Lease, BrokerError | E, Scope.Scope>
  /** Whether a connection is open right now (for health checks and tests). */
  readonly isOpen: Effect.Effect<boolean>
}

/**
 * `open` opens and prepares a connection in the scope it is given (which
 * lives as long as the connection is kept); it is the only place errors come
 * from, besides a lease after the owning scope closed.
 */
export const makeLazyConnection = <E>(options: {
  readonly open: Effect.Effect<ChannelModel, E, Scope.Scope>
  readonly idleTimeToLive: Duration.DurationInput
}): Effect.Effect<LazyConnection<E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const owner = yield* Effect.scope
    const lock = yield* Effect.makeSemaphore(1)
    let current: Held | undefined
    let shutDown = false

    const retire = (held: Held) =>
      Effect.suspend(() => {
        if (current === held) current = undefined
        if (held.retired) return Effect.void
        held.retired = true
        return Scope.close(held.scope, Exit.void)
      })

    yield* Effect.addFinalizer(() =>
      lock.withPermits(1)(Effect.suspend(() => {
        shutDown = true
        return current ? retire(current) : Effect.void
      }))
    )

    const openHeld = Effect.gen(function*() {
      const scope = yield* Scope.make()
      const connection = yield* options.open.pipe(
        Scope.extend(scope),
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
      const held: Held = { connection, scope, alive: true, retired: false, users: 0, epoch: 0 }
      connection.once("close", () => {
        held.alive = false
      })
      return held
    })

    const acquire = lock.withPermits(1)(Effect.suspend((): Effect.Effect<Held, BrokerError | E> => {
      if (shutDown) return Effect.fail(new BrokerError({ message: "The broker connection is shut down" }))
      const reuse = current !== undefined && current.alive ? current : undefined
      const next = reuse
        ? Effect.succeed(reuse)
        // A dead connection is closed now; its remaining users only get errors from it anyway.
        : (current ? retire(current) : Effect.void).pipe(
          Effect.zipRight(openHeld),
          Effect.tap((held) => Effect.sync(() => (current = held)))
        )
      return Effect.map(next, (held) => {
        held.users++
        held.epoch++
        return held
      })
    }))

    const release = (held: Held) =>
      Effect.suspend(() => {
        held.users--
        held.epoch++
        if (held.users > 0) return Effect.void
        if (current !== held || !held.alive) return lock.withPermits(1)(retire(held))
        const epoch = held.epoch
        return Effect.sleep(options.idleTimeToLive).pipe(
          Effect.zipRight(
            lock.withPermits(1)(
              Effect.suspend(() => (held.users === 0 && held.epoch === epoch ? retire(held) : Effect.void))
            )
          ),
          // Released from a finalizer (uninterruptible): the timer itself must stay interruptible, or closing the service waits it out.
          Effect.interruptible,
          Effect.forkIn(owner),
          Effect.asVoid
        )
      })

    const lease = Effect.acquireRelease(acquire, release).pipe(
      Effect.map((held): Lease => ({
        connection: held.connection,
        invalidate: Effect.sync(() => {
          held.alive = false
        })
      }))
    )

    return {
      lease,
      isOpen: Effect.sync(() => current !== undefined && current.alive)
    }
  })
