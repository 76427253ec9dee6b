/**
 * A `Faults` double the test steers per event id:
 *   failAlways(id)            every check fails
 *   failFirstAttempts(id, n)  fails while the delivery's attempt (retry header) is < n: only tier-2 retries get past it
 *   failFirstCalls(id, n)     fails the first n checks: tier-1 immediate retries can absorb it
 *   dieOn(id)                 the check dies (a defect: a bug in a handler)
 * Every check is recorded, with its outcome.
 */
import { Effect, Layer, Ref } from "effect"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { Faults, HandlerError } from "../../src/Worker/Faults.js"

export interface FaultCall {
  readonly eventId: string
  readonly attempt: number
  readonly failed: boolean
}

interface FaultState {
  readonly always: ReadonlySet<string>
  readonly firstAttempts: ReadonlyMap<string, number>
  readonly firstCalls: ReadonlyMap<string, number>
  readonly dies: ReadonlySet<string>
  readonly calls: ReadonlyArray<FaultCall>
}

export class ControllableFaults extends Effect.Service<ControllableFaults>()("OpsDesk/Test/ControllableFaults", {
  effect: Effect.gen(function*() {
    const state = yield* Ref.make<FaultState>({
      always: new Set(),
      firstAttempts: new Map(),
      firstCalls: new Map(),
      dies: new Set(),
      calls: []
    })

    const check = (event: DomainEvent, attempt: number): Effect.Effect<void, HandlerError> =>
      Ref.modify(state, (s): [boolean | "die", FaultState] => {
        const id = event.eventId
        if (s.dies.has(id)) return ["die", { ...s, calls: [...s.calls, { eventId: id, attempt, failed: true }] }]
        const callsLeft = s.firstCalls.get(id) ?? 0
        const failed = s.always.has(id) || attempt < (s.firstAttempts.get(id) ?? 0) || callsLeft > 0
        const firstCalls = callsLeft > 0 ? new Map(s.firstCalls).set(id, callsLeft - 1) : s.firstCalls
        return [failed, { ...s, firstCalls, calls: [...s.calls, { eventId: id, attempt, failed }] }]
      }).pipe(
        Effect.flatMap((failed) =>
          failed === "die"
            ? Effect.dieMessage(`Simulated defect in the handler of ${event.eventId}`)
            : failed
            ? Effect.fail(
              new HandlerError({
                message: `Simulated failure of ${event.event} ${event.eventId} at attempt ${attempt}`
              })
            )
            : Effect.void
        )
      )

    return {
      faults: Faults.of({ check }),
      failAlways: (eventId: string) => Ref.update(state, (s) => ({ ...s, always: new Set(s.always).add(eventId) })),
      failFirstAttempts: (eventId: string, n: number) =>
        Ref.update(state, (s) => ({ ...s, firstAttempts: new Map(s.firstAttempts).set(eventId, n) })),
      failFirstCalls: (eventId: string, n: number) =>
        Ref.update(state, (s) => ({ ...s, firstCalls: new Map(s.firstCalls).set(eventId, n) })),
      dieOn: (eventId: string) => Ref.update(state, (s) => ({ ...s, dies: new Set(s.dies).add(eventId) })),
      calls: Ref.get(state).pipe(Effect.map((s) => s.calls)),
      callsOf: (eventId: string) => Ref.get(state).pipe(Effect.map((s) => s.calls.filter((c) => c.eventId === eventId)))
    } as const
  })
}) {}

/** Provides the `Faults` tag and the `ControllableFaults` controls. */
export const ControllableFaultsLayer = Layer.effect(Faults, Effect.map(ControllableFaults, (c) => c.faults)).pipe(
  Layer.provideMerge(ControllableFaults.Default)
)
