/**
 * In-memory double of the worker's EventStore: `processed_events` claims keyed
 * by (eventId, processor), a notifications table and a watchers map, all in
 * one Ref. A commit is atomic like the SQL statement (src/Worker/EventStore.ts): a failed commit writes
 * nothing (the "lost response" fault is the one exception on purpose: the
 * transaction committed but the client never heard back).
 *
 * Fault hooks:
 *   failNextCommits(k)            the next k commits fail as "database unreachable" (transient)
 *   loseNextCommitResponses(k)    the next k commits apply, then report a transient error
 *   rejectBatchesContaining(id)   every commit whose batch holds `id` is rejected (non-transient)
 *   failNextWatcherLookups(k, t)  the next k watcher lookups fail (transient or not)
 *   onNextCommit(effect)          runs `effect` when the next commit starts (e.g. a broker crash mid-batch)
 */
import { Effect, Either, Layer, Ref } from "effect"
import { EventStore, StoreError } from "../../src/Worker/EventStore.js"
import type { NotificationRow, Plan, Watchers } from "../../src/Worker/Handlers.js"

export interface Claim {
  readonly eventId: string
  readonly eventType: string
  readonly processor: string
}

export type CommitOutcome = "committed" | "transient" | "rejected" | "lost-response"

export interface CommitRecord {
  readonly processor: string
  readonly eventIds: ReadonlyArray<string>
  readonly outcome: CommitOutcome
  /** Event ids claimed by this call (empty unless the transaction applied). */
  readonly claimed: ReadonlyArray<string>
}

export interface StoreState {
  readonly claims: ReadonlyMap<string, Claim>
  readonly notifications: ReadonlyArray<NotificationRow>
  readonly watchers: ReadonlyMap<string, ReadonlyArray<string>>
  readonly commits: ReadonlyArray<CommitRecord>
  readonly watcherLookups: number
  /** Lookups that failed by injection. */
  readonly failedWatcherLookups: number
  // Pending faults.
  readonly transientCommits: number
  readonly lostResponses: number
  readonly transientWatchers: number
  readonly rejectedWatchers: number
  /** eventId -> how many more commits containing it are rejected (Infinity = always). */
  readonly rejects: ReadonlyMap<string, number>
}

export const claimKey = (eventId: string, processor: string) => JSON.stringify([eventId, processor])

const initial: StoreState = {
  claims: new Map(),
  notifications: [],
  watchers: new Map(),
  commits: [],
  watcherLookups: 0,
  failedWatcherLookups: 0,
  transientCommits: 0,
  lostResponses: 0,
  transientWatchers: 0,
  rejectedWatchers: 0,
  rejects: new Map()
}

type Result<A> = Either.Either<A, StoreError>

const unreachable = (what: string) =>
  new StoreError({ message: `${what}: connect ECONNREFUSED 127.0.0.1:5432 (simulated)`, transient: true })

export class MemoryEventStore extends Effect.Service<MemoryEventStore>()("OpsDesk/Test/MemoryEventStore", {
  effect: Effect.gen(function*() {
    const state = yield* Ref.make<StoreState>(initial)
    const commitHooks = yield* Ref.make<ReadonlyArray<Effect.Effect<void>>>([])

    const watchers = (ticketIds: ReadonlyArray<string>): Effect.Effect<Watchers, StoreError> =>
      Ref.modify(state, (s): [Result<Watchers>, StoreState] => {
        const next = { ...s, watcherLookups: s.watcherLookups + 1 }
        if (s.transientWatchers > 0) {
          return [
            Either.left(unreachable("Watcher lookup failed")),
            { ...next, transientWatchers: s.transientWatchers - 1, failedWatcherLookups: s.failedWatcherLookups + 1 }
          ]
        }
        if (s.rejectedWatchers > 0) {
          return [
            Either.left(
              new StoreError({
                message: "Watcher lookup failed: relation \"tickets\" does not exist (simulated)",
                transient: false
              })
            ),
            { ...next, rejectedWatchers: s.rejectedWatchers - 1, failedWatcherLookups: s.failedWatcherLookups + 1 }
          ]
        }
        const found = new Map<string, ReadonlyArray<string>>()
        for (const id of new Set(ticketIds)) {
          const list = s.watchers.get(id)
          if (list !== undefined) found.set(id, list)
        }
        return [Either.right(found), next]
      }).pipe(Effect.flatMap(Either.match({ onLeft: Effect.fail, onRight: Effect.succeed })))

    const runHooks = Ref.getAndSet(commitHooks, []).pipe(
      Effect.flatMap((hooks) => Effect.all(hooks, { discard: true }))
    )

    const commit = (processor: string, plans: ReadonlyArray<Plan>): Effect.Effect<ReadonlySet<string>, StoreError> =>
      runHooks.pipe(
        Effect.zipRight(Ref.modify(state, (s): [Result<ReadonlySet<string>>, StoreState] => {
          const eventIds = plans.map((p) => p.event.eventId)
          const record = (outcome: CommitOutcome, claimed: ReadonlyArray<string> = []) => [
            ...s.commits,
            { processor, eventIds, outcome, claimed }
          ]
          if (s.transientCommits > 0) {
            return [
              Either.left(unreachable("Commit failed")),
              { ...s, transientCommits: s.transientCommits - 1, commits: record("transient") }
            ]
          }
          const bad = eventIds.find((id) => (s.rejects.get(id) ?? 0) > 0)
          if (bad !== undefined) {
            const rejects = new Map(s.rejects)
            rejects.set(bad, (s.rejects.get(bad) ?? 0) - 1)
            return [
              Either.left(
                new StoreError({
                  message: `Commit failed: value too long for type character varying (event ${bad}, simulated)`,
                  transient: false
                })
              ),
              { ...s, rejects, commits: record("rejected") }
            ]
          }
          // As the SQL: INSERT ... ON CONFLICT DO NOTHING RETURNING event_id, then every plan's notifications
          // whose event_id was returned (so a plan given twice in one commit would write its rows twice).
          const claims = new Map(s.claims)
          const claimed = new Set<string>()
          for (const p of plans) {
            const key = claimKey(p.event.eventId, processor)
            if (claims.has(key)) continue
            claims.set(key, { eventId: p.event.eventId, eventType: p.event.event, processor })
            claimed.add(p.event.eventId)
          }
          const notifications = [
            ...s.notifications,
            ...plans.flatMap((p) => p.notifications.filter((n) => claimed.has(n.eventId)))
          ]
          if (s.lostResponses > 0) {
            return [
              Either.left(
                new StoreError({
                  message: "Commit failed: Connection terminated unexpectedly (simulated, after COMMIT)",
                  transient: true
                })
              ),
              {
                ...s,
                claims,
                notifications,
                lostResponses: s.lostResponses - 1,
                commits: record("lost-response", [...claimed])
              }
            ]
          }
          return [Either.right(claimed), { ...s, claims, notifications, commits: record("committed", [...claimed]) }]
        })),
        Effect.flatMap(Either.match({ onLeft: Effect.fail, onRight: Effect.succeed }))
      )

    return {
      store: EventStore.of({ watchers, commit }),
      get: Ref.get(state),
      setWatchers: (ticketId: string, userIds: ReadonlyArray<string>) =>
        Ref.update(state, (s) => ({ ...s, watchers: new Map(s.watchers).set(ticketId, [...userIds]) })),
      onNextCommit: (hook: Effect.Effect<void>) => Ref.update(commitHooks, (hooks) => [...hooks, hook]),
      failNextCommits: (k: number) => Ref.update(state, (s) => ({ ...s, transientCommits: s.transientCommits + k })),
      loseNextCommitResponses: (k: number) => Ref.update(state, (s) => ({ ...s, lostResponses: s.lostResponses + k })),
      failNextWatcherLookups: (k: number, options: { readonly transient: boolean }) =>
        Ref.update(state, (s) =>
          options.transient
            ? { ...s, transientWatchers: s.transientWatchers + k }
            : { ...s, rejectedWatchers: s.rejectedWatchers + k }),
      /** Rejects (non-transient) every commit containing `eventId`, or only the next `times` of them. */
      rejectBatchesContaining: (eventId: string, times = Number.POSITIVE_INFINITY) =>
        Ref.update(state, (s) => ({ ...s, rejects: new Map(s.rejects).set(eventId, times) })),
      claimsOf: (eventId: string) =>
        Ref.get(state).pipe(Effect.map((s) => [...s.claims.values()].filter((c) => c.eventId === eventId))),
      notificationsOf: (eventId: string) =>
        Ref.get(state).pipe(Effect.map((s) => s.notifications.filter((n) => n.eventId === eventId)))
    } as const
  })
}) {}

/** Provides the `EventStore` tag and the `MemoryEventStore` controls over the same state. */
export const MemoryEventStoreLayer = Layer.effect(EventStore, Effect.map(MemoryEventStore, (m) => m.store)).pipe(
  Layer.provideMerge(MemoryEventStore.Default)
)
