/**
 * The dispatcher stopping (a worker's SIGTERM) in the middle of a try: a try
 * whose send is over is still recorded, so its lease's end does not send it
 * again; a send still under way is cut off at once (shutdown does not wait
 * out the send limit) and records nothing, to be sent again after the lease.
 * The repo and the sender are test doubles; the wake-up listener talks to the
 * test database.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Ref, Scope } from "effect"
import { type ChannelSender, Delivered, type DeliveryJob, EmailSender } from "../../src/Notifications/Channel.js"
import { DispatcherLive } from "../../src/Notifications/Dispatcher.js"
import { type Attempt, type Claimed, DeliveriesRepo, type NextState } from "../../src/Notifications/Repo.js"
import { configFrom } from "../support/Env.js"

const JOB: DeliveryJob = {
  id: "1",
  idempotencyKey: "k".repeat(64),
  channel: "email",
  eventId: crypto.randomUUID(),
  eventType: "ticket.created",
  recipientId: null,
  subscriptionId: null,
  payload: { to: "agent@example.com", subject: "s", text: "t", html: "<p>t</p>" },
  attempt: 1
}

const unused = Effect.die("not used by the dispatcher")

/** One claimable job, then none; `record` reports that it started and takes `recordFor` to finish. */
const fakeRepo = (recorded: Ref.Ref<ReadonlyArray<Attempt>>, recording: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const claimed = yield* Ref.make(false)
    return DeliveriesRepo.make({
      claim: () =>
        Ref.getAndSet(claimed, true).pipe(
          Effect.map((taken): ReadonlyArray<Claimed> => (taken ? [] : [{ job: JOB, round: 1 }]))
        ),
      record: (_id: string, attempt: Attempt, _next: NextState) =>
        Deferred.succeed(recording, undefined).pipe(
          Effect.zipRight(Effect.sleep("300 millis")),
          Effect.zipRight(Ref.update(recorded, (all) => [...all, attempt]))
        ),
      nextDueIn: () => Effect.succeed(null),
      list: () => unused,
      summary: unused,
      retry: () => unused,
      attemptsOf: () => unused
    } as unknown as DeliveriesRepo)
  })

const startDispatcher = (sender: ChannelSender, repo: DeliveriesRepo, scope: Scope.Scope) =>
  Layer.buildWithScope(
    DispatcherLive.pipe(Layer.provide([Layer.succeed(DeliveriesRepo, repo), Layer.succeed(EmailSender, sender)])),
    scope
  ).pipe(Effect.withConfigProvider(configFrom({ DISPATCH_LEASE_MS: 4000 })))

it.live("a try whose send is over is recorded even when the dispatcher stops while recording it", () =>
  Effect.gen(function*() {
    const recorded = yield* Ref.make<ReadonlyArray<Attempt>>([])
    const recording = yield* Deferred.make<void>()
    const repo = yield* fakeRepo(recorded, recording)
    const scope = yield* Scope.make()
    yield* startDispatcher({ deliver: () => Effect.succeed(Delivered({ status: 250 })) }, repo, scope)
    yield* Deferred.await(recording)
    yield* Scope.close(scope, Exit.void)
    const attempts = yield* Ref.get(recorded)
    expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, "delivered"]])
  }))

it.live("a send under way is cut off when the dispatcher stops, and nothing is recorded for it", () =>
  Effect.gen(function*() {
    const recorded = yield* Ref.make<ReadonlyArray<Attempt>>([])
    const recording = yield* Deferred.make<void>()
    const sending = yield* Deferred.make<void>()
    const repo = yield* fakeRepo(recorded, recording)
    const scope = yield* Scope.make()
    yield* startDispatcher(
      { deliver: () => Effect.zipRight(Deferred.succeed(sending, undefined), Effect.never) },
      repo,
      scope
    )
    yield* Deferred.await(sending)
    yield* Scope.close(scope, Exit.void)
    // Had the close waited for the send limit, the try would be recorded as "No outcome" before it returned.
    expect(yield* Ref.get(recorded)).toEqual([])
    expect(yield* Deferred.isDone(recording)).toBe(false)
  }))
