/**
 * The dead-letter queue (`tickets.dlq`) as a service: list, replay, purge and
 * discard its messages, and read its depth. Used by `opsdesk dlq ...` and
 * meant for the ops dashboard as well.
 *
 * Every operation borrows the messages it reads (src/Broker/QueueTools.ts):
 * those it does not act on go back to their original positions at the end,
 * or to the queue when the connection closes should the process die midway.
 * Nothing is ever lost by looking.
 *
 * A replay republishes a copy to `opsdesk.events` on a confirm channel and
 * acks (removes) the DLQ copy only once the broker confirmed the republish
 * and did not return it as unroutable. A crash between the two leaves both
 * copies: the event may be delivered twice, and the worker's idempotency
 * (`processed_events`) suppresses the second.
 *
 * Scans are bounded by the queue depth at the start, so messages that arrive
 * meanwhile (a replayed event failing again, say) are not picked up twice.
 *
 * Connection: one, opened on first use and closed after a minute idle; each
 * operation opens its own channels on it.
 */
import { Clock, Data, Duration, Effect, Either, Option } from "effect"
import type { BrokerError, TopologyError } from "../Broker/Amqp.js"
import type { OutgoingMessage, QueuedMessage } from "../Broker/Message.js"
import { type Borrowed, makeQueueTools, type QueueSession } from "../Broker/QueueTools.js"
import { DLQ, EXCHANGE, QUEUES, type QueueState } from "../Broker/Topology.js"
import { RetentionConfig } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import { traced, tracedFn } from "../Observability/Span.js"
import { type DlqEntry, failedAtMs, matches, replayOptions, replayTarget, type Selector, toEntry } from "./Entry.js"

export type DlqError = BrokerError | TopologyError

export class DlqNotFound extends Data.TaggedError("DlqNotFound")<{ readonly message: string }> {}

/** One queue's state as RabbitMQ reports it. */
export type QueueDepth = QueueState

export interface ListOptions {
  /** At most this many entries (default 50). */
  readonly limit?: number
  /** Only entries of this event type. */
  readonly event?: string
}

export interface ReplayProgress {
  /** Messages looked at so far, of `total` (the depth when the replay started). */
  readonly scanned: number
  readonly total: number
  readonly matched: number
  readonly replayed: number
  readonly skipped: number
}

export interface SkippedMessage {
  readonly id: string
  readonly event: string | null
  readonly eventId: string | null
  readonly reason: string
  /** Skipped only because it is older than DLQ_REPLAY_WINDOW (`force` would replay it). */
  readonly tooOld: boolean
}

export interface ReplayResult extends ReplayProgress {
  /** Why each skipped message stayed in the DLQ (the first 100). */
  readonly skippedMessages: ReadonlyArray<SkippedMessage>
  /** Messages older than DLQ_REPLAY_WINDOW replayed anyway because of `force`. */
  readonly forced: number
  /** With `dryRun`: every matched message, as it would be replayed or skipped (nothing was published or removed). */
  readonly plan?: ReplayPlan
}

export interface ReplayPlan {
  readonly wouldReplay: ReadonlyArray<DlqEntry>
  readonly wouldSkip: ReadonlyArray<DlqEntry & { readonly reason: string }>
}

export interface ReplayOptions {
  /** Called after every `progressEvery` messages scanned (default 100), and once at the end. */
  readonly onProgress?: (progress: ReplayProgress) => Effect.Effect<void>
  readonly progressEvery?: number
  /**
   * Replay messages older than DLQ_REPLAY_WINDOW too (and those whose age is
   * unknown). Their event may have been processed already and its claim
   * removed by retention since, so it may run twice: a warning is logged.
   */
  readonly force?: boolean
  /**
   * Decide as a replay would, message by message, but publish and remove
   * nothing: the result's `plan` says what would happen (`opsdesk dlq replay
   * --dry-run`). Every message stays in the DLQ, in order.
   */
  readonly dryRun?: boolean
}

export interface PurgeOptions {
  /** Only messages that failed longer ago than this; without it, everything. */
  readonly olderThan?: Duration.DurationInput
}

const DEFAULT_LIST_LIMIT = 50
const DEFAULT_WINDOW = 100
const MAX_SKIPPED_DETAILS = 100
const IDLE_TIME_TO_LIVE = "1 minute"

/**
 * Borrows DLQ messages one by one, at most the depth at the start, and hands
 * each to `visit`, which returns whether to go on. Whatever `visit` did not
 * remove is given back at the end (and by the broker, should this fail midway).
 */
const scan = <E>(session: QueueSession, visit: (borrowed: Borrowed) => Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    const total = yield* session.depth(DLQ)
    let scanned = 0
    let lastRedelivered = false
    while (scanned < total) {
      const next = yield* session.borrow(DLQ)
      if (Option.isNone(next)) break
      scanned++
      lastRedelivered = next.value.redelivered
      if (!(yield* visit(next.value))) break
    }
    scanned += yield* borrowThroughGivenBack(session, lastRedelivered, total - scanned)
    yield* session.giveBack
    return { total, scanned }
  })

/**
 * A quorum queue serves the messages given back before first, and puts those
 * given back now behind them (QueueTools.ts): stopping a scan in the middle of
 * them would rotate them on every look (the dashboard's listing every 2 s). So
 * a scan that stopped on a given-back message borrows on, unvisited, up to the
 * first one never given back, and all go back together, in queue order. The
 * given-back ones are at most the most any scan has looked at. Returns how many
 * it borrowed.
 */
const borrowThroughGivenBack = (session: QueueSession, lastRedelivered: boolean, left: number) =>
  Effect.gen(function*() {
    let borrowed = 0
    let redelivered = lastRedelivered
    while (session.queueType === "quorum" && redelivered && borrowed < left) {
      const next = yield* session.borrow(DLQ)
      if (Option.isNone(next)) break
      borrowed++
      redelivered = next.value.redelivered
    }
    return borrowed
  })

/**
 * Why a replayable message is still refused: it failed longer ago than the
 * replay window (or nobody knows when), so its event may already have been
 * processed and its claim removed by retention (src/Retention/), and a
 * replay could run it a second time. Undefined when it is young enough.
 */
export const tooOldToReplay = (entry: DlqEntry, replayWindow: Duration.Duration): string | undefined => {
  const window = Duration.format(replayWindow)
  if (entry.ageSeconds === null) {
    return `its failure time is unknown, so it may be older than DLQ_REPLAY_WINDOW (${window}); ` +
      "replay it with force if its event was never processed"
  }
  if (entry.ageSeconds * 1000 <= Duration.toMillis(replayWindow)) return undefined
  return `it failed ${Duration.format(Duration.seconds(entry.ageSeconds))} ago, longer than DLQ_REPLAY_WINDOW ` +
    `(${window}): its event may have been processed and its dedupe claim removed since, so a replay could run it ` +
    "twice; replay it with force if its event was never processed"
}

export class Dlq extends Effect.Service<Dlq>()("OpsDesk/Dlq", {
  scoped: Effect.gen(function*() {
    const { dlqReplayWindow } = yield* RetentionConfig
    const tools = yield* makeQueueTools({ name: "opsdesk-dlq", idleTimeToLive: IDLE_TIME_TO_LIVE })
    /** One operation's channel; a replay opens its own session with a confirm channel. */
    const session = tools.session()

    const depth: Effect.Effect<number, DlqError> = Effect.scoped(Effect.flatMap(session, (s) => s.depth(DLQ))).pipe(
      traced("Dlq.depth")
    )

    /** The four event queues, then the DLQ, read on one channel. */
    const queueDepths: Effect.Effect<ReadonlyArray<QueueDepth>, DlqError> = Effect.scoped(
      Effect.flatMap(session, (s) => s.states([...QUEUES, DLQ]))
    ).pipe(traced("Dlq.queueDepths"))

    const list = tracedFn("Dlq.list")(function*(options: ListOptions = {}) {
      const limit = Math.max(1, options.limit ?? DEFAULT_LIST_LIMIT)
      const now = yield* Clock.currentTimeMillis
      const entries: Array<DlqEntry> = []
      yield* Effect.scoped(Effect.flatMap(session, (s) =>
        scan(s, ({ message }) =>
          Effect.sync(() => {
            const entry = toEntry(message, now)
            if (
              options.event === undefined || entry.event === options.event || entry.originalRoutingKey === options.event
            ) entries.push(entry)
            return entries.length < limit
          }))))
      return entries as ReadonlyArray<DlqEntry>
    })

    /**
     * One page of the entries `keep` accepts: those after the entry with id `after` (when given, the
     * previous page's last: a page that does not move when entries before it leave the queue) and
     * after the first `offset` of them, at most `limit`; whether more follow (the scan goes one match
     * past the page); and how many matching entries come before it. DlqNotFound when `after` is no
     * longer in the queue, or more than `reach` matching entries come before it (the bound `offset` has).
     */
    const page = tracedFn("Dlq.page")(function*(options: {
      readonly after?: string | undefined
      readonly reach: number
      readonly offset: number
      readonly limit: number
      readonly keep: (entry: DlqEntry) => boolean
    }) {
      const now = yield* Clock.currentTimeMillis
      const entries: Array<DlqEntry> = []
      let anchored = options.after === undefined
      let beyondReach = false
      let before = 0
      let skipped = 0
      let hasMore = false
      yield* Effect.scoped(Effect.flatMap(session, (s) =>
        scan(s, ({ message }) =>
          Effect.sync(() => {
            const entry = toEntry(message, now)
            const kept = options.keep(entry)
            if (!anchored) {
              if (kept) before++
              anchored = entry.id === options.after
              beyondReach = !anchored && before >= options.reach
              return !beyondReach
            }
            if (!kept) return true
            if (skipped < options.offset) {
              skipped++
              before++
              return true
            }
            if (entries.length === options.limit) {
              hasMore = true
              return false
            }
            entries.push(entry)
            return true
          }))))
      if (!anchored) {
        return yield* new DlqNotFound({
          message: beyondReach
            ? `The entry ${options.after} this page follows is not among the first ${options.reach} matching entries of ${DLQ}: search or filter to reach it`
            : `The entry ${options.after} this page follows has left ${DLQ} (replayed or discarded)`
        })
      }
      return { entries: entries as ReadonlyArray<DlqEntry>, hasMore, before }
    })

    /** The message with this id, whole (the dashboard's message view); DlqNotFound if it is gone. */
    const find = tracedFn("Dlq.find")(function*(id: string) {
      const now = yield* Clock.currentTimeMillis
      let found: { readonly entry: DlqEntry; readonly message: QueuedMessage } | undefined
      yield* Effect.scoped(Effect.flatMap(session, (s) =>
        scan(s, ({ message }) =>
          Effect.sync(() => {
            const entry = toEntry(message, now)
            if (entry.id !== id) return true
            found = { entry, message }
            return false
          }))))
      if (found === undefined) return yield* new DlqNotFound({ message: `No message with id ${id} in ${DLQ}` })
      return found
    })

    const replayMatching = (selector: Selector, options: ReplayOptions & { readonly max?: number }) =>
      Effect.scoped(Effect.gen(function*() {
        // A dry run publishes nothing: no confirm channel.
        const s = yield* tools.session({ confirm: options.dryRun !== true })
        const window = Math.max(1, options.progressEvery ?? DEFAULT_WINDOW)
        const replayedAt = new Date(yield* Clock.currentTimeMillis)
        const total = yield* s.depth(DLQ)
        const progress = { scanned: 0, total, matched: 0, replayed: 0, skipped: 0 }
        const skippedMessages: Array<SkippedMessage> = []
        const plan = { wouldReplay: [] as Array<DlqEntry>, wouldSkip: [] as Array<DlqEntry & { reason: string }> }
        const skip = (entry: DlqEntry, reason: string, tooOld = false) => {
          progress.skipped++
          if (options.dryRun) plan.wouldSkip.push({ ...entry, reason })
          if (skippedMessages.length < MAX_SKIPPED_DETAILS) {
            skippedMessages.push({ id: entry.id, event: entry.event, eventId: entry.eventId, reason, tooOld })
          }
        }
        let forced = 0
        const report = Effect.suspend(() => (options.onProgress ? options.onProgress({ ...progress }) : Effect.void))
        let done = false
        let lastRedelivered = false
        while (!done && progress.scanned < total) {
          // Borrow up to one window of messages; the selected, replayable ones go out together.
          const outgoing: Array<
            { readonly borrowed: Borrowed; readonly entry: DlqEntry; readonly copy: OutgoingMessage }
          > = []
          for (let i = 0; i < window && progress.scanned < total && !done; i++) {
            const next = yield* s.borrow(DLQ)
            if (Option.isNone(next)) {
              done = true
              break
            }
            const borrowed = next.value
            const msg = borrowed.message
            progress.scanned++
            lastRedelivered = borrowed.redelivered
            const entry = toEntry(msg, replayedAt.getTime())
            if (!matches(selector, entry)) continue
            progress.matched++
            if (options.max !== undefined && progress.matched >= options.max) done = true
            const target = replayTarget(msg)
            if (Either.isLeft(target)) {
              skip(entry, target.left)
              continue
            }
            const tooOld = tooOldToReplay(entry, dlqReplayWindow)
            if (tooOld !== undefined && !options.force) {
              skip(entry, tooOld, true)
              continue
            }
            if (options.dryRun) {
              plan.wouldReplay.push(entry)
              continue
            }
            if (tooOld !== undefined) forced++
            const copy = {
              exchange: EXCHANGE,
              routingKey: target.right,
              content: msg.content,
              options: replayOptions(msg, replayedAt)
            }
            outgoing.push({ borrowed, entry, copy })
          }
          // The copies go out together; a DLQ copy is removed only once its replay was confirmed and routed.
          const outcomes = outgoing.length === 0 ? [] : yield* s.republish(outgoing.map((o) => o.copy))
          for (const [i, item] of outgoing.entries()) {
            const outcome = outcomes[i]!
            if (outcome._tag === "Confirmed") {
              yield* item.borrowed.remove
              progress.replayed++
            } else if (outcome._tag === "Returned") {
              skip(item.entry, `no queue is bound to routing key ${item.copy.routingKey}`)
            } else {
              const cause = describe(outcome.error.cause ?? outcome.error)
              skip(
                item.entry,
                outcome._tag === "Unencodable"
                  ? `the copy cannot be encoded (${cause})`
                  : outcome.sent
                  ? `the broker did not confirm the copy (${cause})`
                  : `publishing the copy failed (${cause})`
              )
            }
          }
          if (progress.scanned < total && !done) yield* report
        }
        progress.scanned += yield* borrowThroughGivenBack(s, lastRedelivered, total - progress.scanned)
        yield* s.giveBack
        yield* report
        if (options.dryRun) return { ...progress, skippedMessages, forced, plan } satisfies ReplayResult
        const result: ReplayResult = { ...progress, skippedMessages, forced }
        if (forced > 0) {
          yield* Effect.logWarning(
            `DLQ replay with force: ${forced} message(s) older than DLQ_REPLAY_WINDOW ` +
              `(${Duration.format(dlqReplayWindow)}), or of unknown age, were sent; an event among them that was ` +
              "processed before its claim was removed by retention runs again"
          )
        }
        if (result.matched > 0) {
          yield* Effect.logInfo(
            `DLQ replay: ${result.replayed} replayed, ${result.skipped} skipped (${result.matched} matched of ${result.scanned} scanned)`
          )
        }
        return result
      }))

    const replay = tracedFn("Dlq.replay")(function*(selector: Selector, options: ReplayOptions = {}) {
      return yield* replayMatching(selector, options)
    })

    const replayOne = tracedFn("Dlq.replayOne")(function*(options: { readonly id: string; readonly force?: boolean }) {
      const result = yield* replayMatching({ id: options.id }, { max: 1, force: options.force ?? false })
      if (result.matched === 0) return yield* new DlqNotFound({ message: `No message with id ${options.id} in ${DLQ}` })
      return result
    })

    const purge = tracedFn("Dlq.purge")(function*(options: PurgeOptions = {}) {
      const olderThan = options.olderThan
      if (olderThan === undefined) {
        const purged = yield* Effect.scoped(Effect.flatMap(session, (s) => s.purge(DLQ)))
        yield* Effect.logInfo(`DLQ purge: removed ${purged} message(s)`)
        return purged
      }
      const cutoff = (yield* Clock.currentTimeMillis) - Duration.toMillis(Duration.decode(olderThan))
      let purged = 0
      yield* Effect.scoped(Effect.flatMap(session, (s) =>
        scan(s, ({ message, remove }) => {
          const failedAt = failedAtMs(message)
          // A message with no failure time at all is kept: age unknown.
          if (failedAt === null || failedAt > cutoff) return Effect.succeed(true)
          return remove.pipe(Effect.map(() => {
            purged++
            return true
          }))
        })))
      yield* Effect.logInfo(
        `DLQ purge: removed ${purged} message(s) older than ${Duration.format(Duration.decode(olderThan))}`
      )
      return purged
    })

    const discard = tracedFn("Dlq.discard")(function*(options: { readonly id: string }) {
      let found = false
      const now = yield* Clock.currentTimeMillis
      yield* Effect.scoped(Effect.flatMap(session, (s) =>
        scan(s, ({ message, remove }) => {
          if (toEntry(message, now).id !== options.id) return Effect.succeed(true)
          return remove.pipe(Effect.map(() => {
            found = true
            return false
          }))
        })))
      if (!found) return yield* new DlqNotFound({ message: `No message with id ${options.id} in ${DLQ}` })
      yield* Effect.logInfo(`DLQ discard: removed message ${options.id}`)
    })

    return {
      /** Messages in the DLQ (ready ones; those borrowed by a concurrent operation are not counted). */
      depth,
      /** Depth and consumers of the four event queues and the DLQ (the ops dashboard's queue panel). */
      queueDepths,
      /** The first `limit` entries, in queue order, without removing anything. */
      list,
      /** A page of the entries a predicate keeps, in queue order, and whether more follow. */
      page,
      /** One message with its headers and body, found by id. */
      find,
      /** Republishes the selected messages to their original routing keys; poison and unroutable ones stay. */
      replay,
      /** Replays the message with this id (the dashboard's button); DlqNotFound if it is gone. */
      replayOne,
      /** Removes every message, or those that failed more than `olderThan` ago; returns how many. */
      purge,
      /** Removes the message with this id; DlqNotFound if it is gone. */
      discard,
      /** Whether the service holds a broker connection right now (it opens one on demand). */
      isConnected: tools.isConnected
    } as const
  })
}) {}
