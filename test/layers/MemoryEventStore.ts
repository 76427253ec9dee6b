/**
 * In-memory double of the worker's EventStore: `processed_events` claims keyed
 * by (eventId, processor) with their fingerprints, a notifications table, a
 * watchers map, and the tickets (with their owners) and messages that exist,
 * all in one Ref. A commit is atomic like the SQL statement (src/Worker/EventStore.ts): a failed commit writes
 * nothing (the "lost response" fault is the one exception on purpose: the
 * transaction committed but the client never heard back). Like the statement,
 * it claims only events whose entity exists (`Plan.requires`), and tells a
 * copy (same fingerprint, or a claim without one) from a reused id (another
 * fingerprint: a conflict).
 *
 * Entities:
 *   addEntitiesOf(events)         the tickets and messages `events` name now exist (as the API would have written them)
 *   claimAs(eventId, fp)          a claim made earlier (by another payload under this id, or before fingerprints: null)
 *
 * Fault hooks:
 *   failNextCommits(k)            the next k commits fail as "database unreachable" (transient)
 *   loseNextCommitResponses(k)    the next k commits apply, then report a transient error
 *   rejectBatchesContaining(id)   every commit whose batch holds `id` is rejected (non-transient)
 *   failNextWatcherLookups(k, t)  the next k watcher lookups fail (transient or not)
 *   onNextCommit(effect)          runs `effect` when the next commit starts (e.g. a broker crash mid-batch)
 */
import { Effect, Either, Layer, Ref } from "effect"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { type CommitResult, EventStore, StoreError } from "../../src/Worker/EventStore.js"
import type { NotificationRow, Plan, Requirement, Watchers } from "../../src/Worker/Handlers.js"

export interface Claim {
  readonly eventId: string
  readonly eventType: string
  readonly processor: string
  /** Null for a claim made before fingerprints were stored. */
  readonly fingerprint: string | null
}

export type CommitOutcome = "committed" | "transient" | "rejected" | "lost-response"

export interface CommitRecord {
  readonly processor: string
  readonly eventIds: ReadonlyArray<string>
  readonly outcome: CommitOutcome
  /** Event ids claimed by this call (empty unless the transaction applied). */
  readonly claimed: ReadonlyArray<string>
  /** Event ids whose entity did not exist (empty unless the transaction applied). */
  readonly missing: ReadonlyArray<string>
  /** Event ids claimed before with another fingerprint (empty unless the transaction applied). */
  readonly conflicts: ReadonlyArray<string>
}

export interface StoreState {
  readonly claims: ReadonlyMap<string, Claim>
  readonly notifications: ReadonlyArray<NotificationRow>
  readonly watchers: ReadonlyMap<string, ReadonlyArray<string>>
  /** ticket id -> owner id */
  readonly tickets: ReadonlyMap<string, string>
  readonly messages: ReadonlyMap<string, { readonly ticketId: string; readonly authorId: string }>
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
  tickets: new Map(),
  messages: new Map(),
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

/** The statement's `known`: the ticket with that owner, or the message by that author on that ticket. */
const exists = (s: StoreState, r: Requirement) => {
  if (r._tag === "Ticket") return s.tickets.get(r.ticketId) === r.ownerId
  const m = s.messages.get(r.messageId)
  return m !== undefined && m.ticketId === r.ticketId && m.authorId === r.authorId
}

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

    const commit = (processor: string, plans: ReadonlyArray<Plan>): Effect.Effect<CommitResult, StoreError> =>
      runHooks.pipe(
        Effect.zipRight(Ref.modify(state, (s): [Result<CommitResult>, StoreState] => {
          const eventIds = plans.map((p) => p.event.eventId)
          const record = (outcome: CommitOutcome, applied?: CommitResult) => [
            ...s.commits,
            {
              processor,
              eventIds,
              outcome,
              claimed: applied ? [...applied.claimed] : [],
              missing: applied ? [...applied.missing] : [],
              conflicts: applied ? [...applied.conflicts.keys()] : []
            }
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
          // As the SQL: the plans whose entity exists, then INSERT ... ON CONFLICT DO UPDATE ... WHERE the
          // fingerprints differ, then the notifications of the events claimed now.
          const known = plans.filter((p) => exists(s, p.requires))
          const missing = new Set(plans.filter((p) => !exists(s, p.requires)).map((p) => p.event.eventId))
          if (new Set(known.map((p) => p.event.eventId)).size !== known.length) {
            return [
              Either.left(
                new StoreError({
                  message: "Commit failed: ON CONFLICT DO UPDATE command cannot affect row a second time (simulated)",
                  transient: false
                })
              ),
              { ...s, commits: record("rejected") }
            ]
          }
          const claims = new Map(s.claims)
          const claimed = new Set<string>()
          const conflicts = new Map<string, string>()
          for (const p of known) {
            const key = claimKey(p.event.eventId, processor)
            const before = claims.get(key)
            if (before === undefined) {
              claims.set(key, {
                eventId: p.event.eventId,
                eventType: p.event.event,
                processor,
                fingerprint: p.fingerprint
              })
              claimed.add(p.event.eventId)
            } else if (before.fingerprint !== null && before.fingerprint !== p.fingerprint) {
              conflicts.set(p.event.eventId, before.fingerprint)
            }
          }
          const notifications = [
            ...s.notifications,
            ...known.flatMap((p) => p.notifications.filter((n) => claimed.has(n.eventId)))
          ]
          const result: CommitResult = { claimed, conflicts, missing }
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
                commits: record("lost-response", result)
              }
            ]
          }
          return [Either.right(result), { ...s, claims, notifications, commits: record("committed", result) }]
        })),
        Effect.flatMap(Either.match({ onLeft: Effect.fail, onRight: Effect.succeed }))
      )

    return {
      store: EventStore.of({ watchers, commit }),
      get: Ref.get(state),
      setWatchers: (ticketId: string, userIds: ReadonlyArray<string>) =>
        Ref.update(state, (s) => ({ ...s, watchers: new Map(s.watchers).set(ticketId, [...userIds]) })),
      /** The tickets and messages `events` name exist from now on, as the API writes them before their events. */
      addEntitiesOf: (events: ReadonlyArray<DomainEvent>) =>
        Ref.update(state, (s) => {
          const tickets = new Map(s.tickets)
          const messages = new Map(s.messages)
          for (const e of events) {
            if (e.event === "message.sent") {
              messages.set(e.payload.id, { ticketId: e.payload.ticketId, authorId: e.payload.authorId })
              if (!tickets.has(e.payload.ticketId)) tickets.set(e.payload.ticketId, e.payload.authorId)
            } else {
              tickets.set(e.payload.id, e.payload.ownerId)
            }
          }
          return { ...s, tickets, messages }
        }),
      /** A claim made earlier under this id: with another payload's fingerprint, or (null) before fingerprints. */
      claimAs: (eventId: string, eventType: string, fingerprint: string | null, processor = "worker") =>
        Ref.update(state, (s) => ({
          ...s,
          claims: new Map(s.claims).set(claimKey(eventId, processor), { eventId, eventType, processor, fingerprint })
        })),
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
