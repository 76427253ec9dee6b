/**
 * A process-wide "stop now" signal for errors no retry can fix, raised by
 * background fibers (a queue declared with other settings, say). Each
 * entrypoint races its application against it, so the process shuts down
 * cleanly and exits non-zero with the error instead of looping.
 */
import { Context, Deferred, Effect, Layer } from "effect"

export class Fatal
  extends Context.Tag("OpsDesk/Fatal")<Fatal, Deferred.Deferred<never, { readonly message: string }>>()
{}

export const FatalLive = Layer.effect(Fatal, Deferred.make<never, { readonly message: string }>())

/** Runs `app` until it ends or something raises Fatal. */
export const runUntilFatal = <E, R>(app: Effect.Effect<never, E, R>) =>
  Effect.flatMap(Fatal, (fatal) =>
    Effect.raceFirst(
      app,
      Deferred.await(fatal).pipe(Effect.tapError((e) => Effect.logFatal(e.message)))
    ))
