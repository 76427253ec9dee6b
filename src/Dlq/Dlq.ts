/**
 * The dead-letter queue (`tickets.dlq`) as a service: list, replay, purge and
 * discard its messages, and read its depth. Used by `opsdesk dlq ...` and
 * meant for the ops dashboard as well.
 *
 * Every operation reads the queue with basic.get *without* acking, so the
 * messages it does not act on are only borrowed: at the end they are nacked
 * with requeue (RabbitMQ puts them back in their original positions), and if
 * the process dies midway the broker requeues them when the connection
 * closes. Nothing is ever lost by looking.
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
 * Connection: one, opened on first use and closed after a minute idle (see
 * Connection.ts); each operation opens its own channels on it. The topology is
 * declared on every new connection, so the tools work on a fresh broker.
 */
import { Clock, Data, Duration, Effect, Either } from "effect"
import type { Channel, ConfirmChannel, GetMessage, Message, Options } from "amqplib"
import { AmqpUrl, QueueType, WorkerConfig } from "../Config.js"
import { BrokerError, openChannel, openConfirmChannel, openConnection } from "../Broker/Amqp.js"
import { declareTopology, DLQ, EXCHANGE, QUEUES, type TopologyError } from "../Broker/Topology.js"
import { brokerDelays } from "../Worker/RetryPolicy.js"
import { makeLazyConnection } from "./Connection.js"
import { type DlqEntry, failedAtMs, matches, replayOptions, replayTarget, type Selector, toEntry } from "./Entry.js"
import { describe } from "../Kit/Cause.js"

export type DlqError = BrokerError | TopologyError

export class DlqNotFound extends Data.TaggedError("DlqNotFound")<{ readonly message: string }> {}

/** One queue's state as RabbitMQ reports it (passive declare). */
export interface QueueDepth {
  readonly queue: string
  /** Ready messages (not those delivered and unacked). */
  readonly messages: number
  readonly consumers: number
}

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
}

export interface ReplayResult extends ReplayProgress {
  /** Why each skipped message stayed in the DLQ (the first 100). */
  readonly skippedMessages: ReadonlyArray<SkippedMessage>
}

export interface ReplayOptions {
  /** Called after every `progressEvery` messages scanned (default 100), and once at the end. */
  readonly onProgress?: (progress: ReplayProgress) => Effect.Effect<void>
  readonly progressEvery?: number
}

export interface PurgeOptions {
  /** Only messages that failed longer ago than this; without it, everything. */
  readonly olderThan?: Duration.DurationInput
}

const DEFAULT_LIST_LIMIT = 50
const DEFAULT_WINDOW = 100
const MAX_SKIPPED_DETAILS = 100
const IDLE_TIME_TO_LIVE = "1 minute"

const broker = (what: string) => (cause: unknown) => new BrokerError({ message: `${what}: ${describe(cause)}`, cause })

const depthOf = (channel: Channel) =>
  Effect.tryPromise({ try: () => channel.checkQueue(DLQ), catch: broker(`Cannot read ${DLQ}`) }).pipe(Effect.map((q) => q.messageCount))

/** Borrows the next message (unacked); `false` once no ready message is left. */
const take = (channel: Channel) =>
  Effect.tryPromise({ try: () => channel.get(DLQ, { noAck: false }), catch: broker(`Cannot read from ${DLQ}`) })

const ack = (channel: Channel, msg: Message) => Effect.try({ try: () => channel.ack(msg), catch: broker(`Cannot remove a message from ${DLQ}`) })

/** Gives every borrowed, unsettled message back, in its original position. */
const giveBack = (channel: Channel) =>
  Effect.sync(() => {
    try {
      channel.nackAll(true)
    } catch {
      // The channel is gone: the broker has requeued them already.
    }
  })

/**
 * Borrows messages one by one, at most the depth at the start, and hands each
 * to `visit`, which returns whether to go on. Whatever `visit` did not ack is
 * given back at the end (and by the broker, should this fail midway).
 */
const scan = <E>(channel: Channel, visit: (msg: GetMessage) => Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    const total = yield* depthOf(channel)
    let scanned = 0
    while (scanned < total) {
      const msg = yield* take(channel)
      if (msg === false) break
      scanned++
      if (!(yield* visit(msg))) break
    }
    yield* giveBack(channel)
    return { total, scanned }
  })

type Outcome = { readonly _tag: "Confirmed" } | { readonly _tag: "Returned" } | { readonly _tag: "Refused"; readonly reason: string }

interface Outgoing {
  readonly msg: GetMessage
  readonly routingKey: string
  readonly options: Options.Publish
}

const sameMessage = (returned: Message, sent: Outgoing) =>
  returned.fields.routingKey === sent.routingKey &&
  returned.properties.messageId === sent.msg.properties.messageId &&
  returned.content.equals(sent.msg.content)

/**
 * Publishes a window of copies to `opsdesk.events` (mandatory, confirmed) and
 * waits for every confirmation. A copy the broker returned (no queue bound to
 * its routing key) is reported as Returned: RabbitMQ sends basic.return before
 * the basic.ack of the same message, so all returns are in by then. Should two
 * identical messages share a window and one be returned, both count as
 * returned: that keeps one copy too many, never one too few.
 */
const publishWindow = (confirm: ConfirmChannel, items: ReadonlyArray<Outgoing>) =>
  Effect.async<ReadonlyArray<Outcome>>((resume) => {
    if (items.length === 0) return resume(Effect.succeed([]))
    const returned: Array<Message> = []
    const onReturn = (m: Message) => {
      returned.push(m)
    }
    confirm.on("return", onReturn)
    const outcomes: Array<Outcome> = new Array(items.length)
    let pending = items.length
    const settle = (i: number, outcome: Outcome) => {
      outcomes[i] = outcome
      if (--pending > 0) return
      confirm.off("return", onReturn)
      resume(Effect.succeed(outcomes.map((o, j) => o._tag === "Confirmed" && returned.some((r) => sameMessage(r, items[j]!)) ? { _tag: "Returned" } : o)))
    }
    items.forEach((item, i) => {
      try {
        confirm.publish(EXCHANGE, item.routingKey, item.msg.content, item.options, (err) =>
          settle(i, err ? { _tag: "Refused", reason: `the broker did not confirm the copy (${describe(err)})` } : { _tag: "Confirmed" }))
      } catch (cause) {
        settle(i, { _tag: "Refused", reason: `publishing the copy failed (${describe(cause)})` })
      }
    })
    return Effect.sync(() => {
      confirm.off("return", onReturn)
    })
  })

export class Dlq extends Effect.Service<Dlq>()("OpsDesk/Dlq", {
  scoped: Effect.gen(function*() {
    const url = yield* AmqpUrl
    const queueType = yield* QueueType
    const retryDelaysMs = brokerDelays(yield* WorkerConfig)

    const pool = yield* makeLazyConnection<BrokerError | TopologyError>({
      open: Effect.gen(function*() {
        const connection = yield* openConnection(url, "opsdesk-dlq")
        yield* Effect.scoped(Effect.flatMap(openChannel(connection), (channel) => declareTopology(channel, { queueType, retryDelaysMs })))
        return connection
      }),
      idleTimeToLive: IDLE_TIME_TO_LIVE
    })

    /**
     * A channel (and a confirm channel, for replays) for one operation. A
     * channel that will not open means the connection is unusable: it is
     * replaced and the open tried once more.
     */
    const channels = Effect.gen(function*() {
      const { connection, invalidate } = yield* pool.lease
      return yield* Effect.all({ channel: openChannel(connection), confirm: openConfirmChannel(connection) }).pipe(
        Effect.tapError(() => invalidate)
      )
    }).pipe(Effect.retry({ times: 1, while: (e) => e._tag === "BrokerError" }))

    const channel = Effect.gen(function*() {
      const { connection, invalidate } = yield* pool.lease
      return yield* openChannel(connection).pipe(Effect.tapError(() => invalidate))
    }).pipe(Effect.retry({ times: 1, while: (e) => e._tag === "BrokerError" }))

    const depth: Effect.Effect<number, DlqError> = Effect.scoped(Effect.flatMap(channel, depthOf)).pipe(Effect.withSpan("Dlq.depth"))

    /** The four event queues, then the DLQ, read on one channel. */
    const queueDepths: Effect.Effect<ReadonlyArray<QueueDepth>, DlqError> = Effect.scoped(Effect.flatMap(channel, (ch) =>
      Effect.forEach([...QUEUES, DLQ], (queue) =>
        Effect.tryPromise({ try: () => ch.checkQueue(queue), catch: broker(`Cannot read ${queue}`) }).pipe(
          Effect.map((q): QueueDepth => ({ queue, messages: q.messageCount, consumers: q.consumerCount }))
        )))).pipe(Effect.withSpan("Dlq.queueDepths"))

    const list = Effect.fn("Dlq.list")(function*(options: ListOptions = {}) {
      const limit = Math.max(1, options.limit ?? DEFAULT_LIST_LIMIT)
      const now = yield* Clock.currentTimeMillis
      const entries: Array<DlqEntry> = []
      yield* Effect.scoped(Effect.flatMap(channel, (ch) =>
        scan(ch, (msg) =>
          Effect.sync(() => {
            const entry = toEntry(msg, now)
            if (options.event === undefined || entry.event === options.event || entry.originalRoutingKey === options.event) entries.push(entry)
            return entries.length < limit
          }))))
      return entries as ReadonlyArray<DlqEntry>
    })

    const replayMatching = (selector: Selector, options: ReplayOptions & { readonly max?: number }) =>
      Effect.scoped(Effect.gen(function*() {
        const { channel: ch, confirm } = yield* channels
        const window = Math.max(1, options.progressEvery ?? DEFAULT_WINDOW)
        const replayedAt = new Date(yield* Clock.currentTimeMillis)
        const total = yield* depthOf(ch)
        const progress = { scanned: 0, total, matched: 0, replayed: 0, skipped: 0 }
        const skippedMessages: Array<SkippedMessage> = []
        const skip = (entry: DlqEntry, reason: string) => {
          progress.skipped++
          if (skippedMessages.length < MAX_SKIPPED_DETAILS) skippedMessages.push({ id: entry.id, event: entry.event, eventId: entry.eventId, reason })
        }
        const report = Effect.suspend(() => (options.onProgress ? options.onProgress({ ...progress }) : Effect.void))
        let done = false
        while (!done && progress.scanned < total) {
          // Borrow up to one window of messages; the selected, replayable ones go out together.
          const outgoing: Array<Outgoing & { readonly entry: DlqEntry }> = []
          for (let i = 0; i < window && progress.scanned < total && !done; i++) {
            const msg = yield* take(ch)
            if (msg === false) {
              done = true
              break
            }
            progress.scanned++
            const entry = toEntry(msg, replayedAt.getTime())
            if (!matches(selector, entry)) continue
            progress.matched++
            if (options.max !== undefined && progress.matched >= options.max) done = true
            const target = replayTarget(msg)
            if (Either.isLeft(target)) {
              skip(entry, target.left)
              continue
            }
            outgoing.push({ msg, entry, routingKey: target.right, options: replayOptions(msg, replayedAt) })
          }
          const outcomes = yield* publishWindow(confirm, outgoing)
          for (const [i, item] of outgoing.entries()) {
            const outcome = outcomes[i]!
            if (outcome._tag === "Confirmed") {
              yield* ack(ch, item.msg)
              progress.replayed++
            } else {
              skip(item.entry, outcome._tag === "Returned" ? `no queue is bound to routing key ${item.routingKey}` : outcome.reason)
            }
          }
          if (progress.scanned < total && !done) yield* report
        }
        yield* giveBack(ch)
        yield* report
        const result: ReplayResult = { ...progress, skippedMessages }
        if (result.matched > 0) {
          yield* Effect.logInfo(`DLQ replay: ${result.replayed} replayed, ${result.skipped} skipped (${result.matched} matched of ${result.scanned} scanned)`)
        }
        return result
      }))

    const replay = Effect.fn("Dlq.replay")(function*(selector: Selector, options: ReplayOptions = {}) {
      return yield* replayMatching(selector, options)
    })

    const replayOne = Effect.fn("Dlq.replayOne")(function*(options: { readonly id: string }) {
      const result = yield* replayMatching({ id: options.id }, { max: 1 })
      if (result.matched === 0) return yield* new DlqNotFound({ message: `No message with id ${options.id} in ${DLQ}` })
      return result
    })

    const purge = Effect.fn("Dlq.purge")(function*(options: PurgeOptions = {}) {
      const olderThan = options.olderThan
      if (olderThan === undefined) {
        const purged = yield* Effect.scoped(Effect.flatMap(channel, (ch) =>
          Effect.tryPromise({ try: () => ch.purgeQueue(DLQ), catch: broker(`Cannot purge ${DLQ}`) })))
        yield* Effect.logInfo(`DLQ purge: removed ${purged.messageCount} message(s)`)
        return purged.messageCount
      }
      const cutoff = (yield* Clock.currentTimeMillis) - Duration.toMillis(Duration.decode(olderThan))
      let purged = 0
      yield* Effect.scoped(Effect.flatMap(channel, (ch) =>
        scan(ch, (msg) => {
          const failedAt = failedAtMs(msg)
          // A message with no failure time at all is kept: age unknown.
          if (failedAt === null || failedAt > cutoff) return Effect.succeed(true)
          return ack(ch, msg).pipe(Effect.map(() => {
            purged++
            return true
          }))
        })))
      yield* Effect.logInfo(`DLQ purge: removed ${purged} message(s) older than ${Duration.format(Duration.decode(olderThan))}`)
      return purged
    })

    const discard = Effect.fn("Dlq.discard")(function*(options: { readonly id: string }) {
      let found = false
      const now = yield* Clock.currentTimeMillis
      yield* Effect.scoped(Effect.flatMap(channel, (ch) =>
        scan(ch, (msg) => {
          if (toEntry(msg, now).id !== options.id) return Effect.succeed(true)
          return ack(ch, msg).pipe(Effect.map(() => {
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
      /** Republishes the selected messages to their original routing keys; poison and unroutable ones stay. */
      replay,
      /** Replays the message with this id (the dashboard's button); DlqNotFound if it is gone. */
      replayOne,
      /** Removes every message, or those that failed more than `olderThan` ago; returns how many. */
      purge,
      /** Removes the message with this id; DlqNotFound if it is gone. */
      discard,
      /** Whether the service holds a broker connection right now (it opens one on demand). */
      isConnected: pool.isOpen
    } as const
  })
}) {}
