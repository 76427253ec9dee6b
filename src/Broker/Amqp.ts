/**
 * amqplib connections and channels as scoped resources (`openConnection`, the
 * one connect function, fails over across a cluster's nodes), and `supervise`,
 * which keeps a session running across broker outages: it connects, runs the
 * session until the connection drops, then reconnects on an exponential
 * `Schedule` (capped) and runs the session again, which declares the topology
 * anew. A TopologyError (a queue declared with other settings) is not retried.
 */
import * as amqp from "amqplib"
import type { Channel, ChannelModel, ConfirmChannel } from "amqplib"
import {
  Data,
  Deferred,
  type Duration,
  Effect,
  Metric,
  MetricLabel,
  Option,
  Redacted,
  Schedule,
  type Scope
} from "effect"
import { Socket } from "node:net"
import { Writable } from "node:stream"
import { amqpNodeUrls, AmqpUrl, BrokerReconnect } from "../Config.js"
import { Fatal } from "../Fatal.js"
import { describe } from "../Kit/Cause.js"

/** A queue or exchange exists with other settings: fatal, since reconnecting cannot fix it. */
export class TopologyError
  extends Data.TaggedError("TopologyError")<{ readonly message: string; readonly cause: unknown }>
{}

export class BrokerError
  extends Data.TaggedError("BrokerError")<{ readonly message: string; readonly cause?: unknown }>
{}

/** `amqp://host:port` of a node URL: where a connection is, without credentials or vhost (logs, errors). */
export const nodeLabel = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.hostname}:${u.port || (u.protocol === "amqps:" ? "5671" : "5672")}`
  } catch {
    return "(not a URL)"
  }
}

/**
 * amqplib's Mux hands the socket each message (its frames joined in one
 * buffer) as a write of its own, a syscall each: a batch of 1,000 publishes
 * was 1,000 writes. Corking the socket at a tick's first write and uncorking
 * it on the next tick sends the tick's writes in one writev; nothing waits for
 * a timer. amqplib has no option for it, so its socket (`connection.stream`,
 * internal) is wrapped; the fix upstream would cork in Mux._readIncoming.
 * Without that field (another amqplib) writes go out as they did
 * (test/broker/socket-writes.integration.test.ts notices).
 *
 * Only the publisher's connection does it (Publisher.ts), where batches of
 * publishes are written. On the DLQ tools' connection it broke the quorum
 * DLQ's listing (a listing right after another found the queue empty; README,
 * Benchmarks), so the other connections write as amqplib does.
 *
 * It also turns Nagle's algorithm back on for that connection (`connectNode`
 * turns it off): with no consumer on it, the broker's confirms carry the ACKs
 * its publishes wait for, and a backlog's writes leave in fewer segments
 * (with it off, RabbitMQ spent more CPU per published event; README,
 * Benchmarks).
 */
export const batchSocketWrites = (model: ChannelModel): void => {
  const connection: object = model.connection
  const socket = "stream" in connection ? connection.stream : undefined
  if (!(socket instanceof Writable)) return
  if (socket instanceof Socket) socket.setNoDelay(false)
  const write = socket.write
  let corked = false
  const uncork = () => {
    corked = false
    socket.uncork()
  }
  socket.write = function(this: Writable, ...args: Parameters<Writable["write"]>) {
    if (!corked) {
      corked = true
      socket.cork()
      process.nextTick(uncork)
    }
    return write.apply(this, args)
  } as Writable["write"]
}

const connectNode = (url: string, name: string): Effect.Effect<ChannelModel, BrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      // amqplib leaves Nagle's algorithm on: with a consumer on the connection, a publish (the worker's retry
      // copies) written while an earlier frame is unacknowledged waits for the peer's delayed ACK (up to 40 ms).
      try: () => amqp.connect(url, { clientProperties: { connection_name: name }, timeout: 5000, noDelay: true }),
      catch: (cause) => new BrokerError({ message: `Cannot connect to RabbitMQ: ${describe(cause)}`, cause })
    }),
    // A release runs uninterruptibly, and a timeout ends its effect by interrupting it: without `interruptible` a
    // close the broker never answers would hold the scope (and shutdown) forever.
    (connection) =>
      Effect.promise(() => connection.close().catch(() => undefined)).pipe(
        Effect.interruptible,
        Effect.timeout("3 seconds"),
        Effect.ignore
      )
  ).pipe(
    Effect.tap((connection) =>
      // Errors surface through 'close'; this listener only keeps Node from throwing.
      Effect.sync(() => connection.on("error", () => undefined))
    )
  )

/**
 * The node each list of nodes starts from, per AMQP URL setting, shared by
 * every connection of the process: once one connection finds a node dead, the
 * others fail over without trying it first.
 */
const startNode = new Map<string, number>()

/** The node each named connection is on right now (what `currentNodes` reports). */
const connectedNodes = new Map<string, string>()

/** The node of each open connection, for the sessions `supervise` runs on it. */
const nodeOfConnection = new WeakMap<ChannelModel, string>()

/** `name → node` of the connections open right now (`amqp://host:port` each). */
export const currentNodes: Effect.Effect<ReadonlyMap<string, string>> = Effect.sync(() => new Map(connectedNodes))

/** The node (`amqp://host:port`, no credentials or vhost) the connection named `name` is on; none while it is not open. */
export const connectedNode = (name: string): Effect.Effect<Option.Option<string>> =>
  Effect.sync(() => Option.fromNullable(connectedNodes.get(name)))

/** The node a connection opened by `openConnection` is on. */
export const connectionNode = (connection: ChannelModel): Option.Option<string> =>
  Option.fromNullable(nodeOfConnection.get(connection))

/**
 * 1 for the node each named connection is on, 0 for one it has left: the
 * process's `/metrics` (API, worker, relay) says where it is connected.
 * Labels come from AMQP_URL and the fixed connection names only.
 */
export const brokerConnected = Metric.gauge("opsdesk_broker_connected", {
  description: "1 while the named RabbitMQ connection is on this node (amqp://host:port), 0 once it left it"
})

const reportNode = (name: string, node: string, value: 0 | 1) =>
  brokerConnected.unsafeUpdate(value, [MetricLabel.make("connection", name), MetricLabel.make("node", node)])

/**
 * THE way OpsDesk connects to RabbitMQ. `url` is one node or a cluster's
 * comma-separated nodes (Config.ts `amqpNodeUrls`); they are tried in turn,
 * from the one the last good connection was on, each once: the first that
 * answers is used, and when none does the error names each node's failure
 * (callers retry on their backoff schedule). A connection the broker drops
 * moves the start to the next node. The node is logged at every connect.
 */
export const openConnection = (
  url: Redacted.Redacted<string>,
  name: string
): Effect.Effect<ChannelModel, BrokerError, Scope.Scope> =>
  Effect.suspend(() => {
    const setting = Redacted.value(url)
    const nodes = amqpNodeUrls(setting)
    const first = (startNode.get(setting) ?? 0) % nodes.length
    const order = nodes.map((_, k) => (first + k) % nodes.length)
    const failures: Array<string> = []
    const attempt = (k: number): Effect.Effect<ChannelModel, BrokerError, Scope.Scope> => {
      const index = order[k]!
      const node = nodes[index]!
      return connectNode(node, name).pipe(
        Effect.tap((connection) =>
          Effect.gen(function*() {
            startNode.set(setting, index)
            connectedNodes.set(name, nodeLabel(node))
            nodeOfConnection.set(connection, nodeLabel(node))
            reportNode(name, nodeLabel(node), 1)
            connection.once("close", (err?: unknown) => {
              if (connectedNodes.get(name) === nodeLabel(node)) connectedNodes.delete(name)
              reportNode(name, nodeLabel(node), 0)
              // Closed by the broker or the network (not by us): start the next attempt elsewhere.
              if (err !== undefined && err !== null && startNode.get(setting) === index) {
                startNode.set(setting, (index + 1) % nodes.length)
              }
            })
            yield* Effect.logInfo(
              `RabbitMQ connected (${name}) to ${nodeLabel(node)}` +
                (nodes.length > 1 ? ` (node ${index + 1} of ${nodes.length})` : "")
            )
          })
        ),
        Effect.catchTag("BrokerError", (e) => {
          if (nodes.length === 1) return Effect.fail(e)
          failures.push(`${nodeLabel(node)}: ${describe(e.cause)}`)
          if (k + 1 < order.length) {
            return Effect.logWarning(`RabbitMQ node ${nodeLabel(node)} unavailable (${name}); trying the next one`)
              .pipe(Effect.zipRight(attempt(k + 1)))
          }
          return Effect.fail(
            new BrokerError({
              message: `Cannot connect to RabbitMQ: none of its ${nodes.length} nodes answered (${
                failures.join("; ")
              })`,
              cause: e.cause
            })
          )
        })
      )
    }
    return attempt(0)
  })

/** Bounded even as a release (uninterruptible): see connectNode. */
const closeChannel = (channel: Channel) =>
  Effect.promise(() => channel.close().catch(() => undefined)).pipe(
    Effect.interruptible,
    Effect.timeout("3 seconds"),
    Effect.ignore
  )

export const openChannel = (connection: ChannelModel): Effect.Effect<Channel, BrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => connection.createChannel(),
      catch: (cause) => new BrokerError({ message: `Cannot open channel: ${describe(cause)}`, cause })
    }).pipe(Effect.tap((ch) => Effect.sync(() => ch.on("error", () => undefined)))),
    closeChannel
  )

export const openConfirmChannel = (connection: ChannelModel): Effect.Effect<ConfirmChannel, BrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => connection.createConfirmChannel(),
      catch: (cause) => new BrokerError({ message: `Cannot open confirm channel: ${describe(cause)}`, cause })
    }).pipe(Effect.tap((ch) => Effect.sync(() => ch.on("error", () => undefined)))),
    closeChannel
  )

/** Fails with BrokerError when the connection or channel emits 'close'. */
export const awaitClose = (emitter: ChannelModel | Channel, what: string): Effect.Effect<never, BrokerError> =>
  Effect.async<never, BrokerError>((resume) => {
    const onClose = (err?: unknown) =>
      resume(
        Effect.fail(
          new BrokerError({ message: `RabbitMQ ${what} closed${err ? `: ${describe(err)}` : ""}`, cause: err })
        )
      )
    emitter.once("close", onClose)
    return Effect.sync(() => {
      emitter.off("close", onClose)
    })
  })

export interface ReconnectPolicy {
  readonly initialDelay: Duration.Duration
  readonly maxDelay: Duration.Duration
}

export const reconnectSchedule = (policy: ReconnectPolicy) =>
  Schedule.exponential(policy.initialDelay).pipe(
    Schedule.either(Schedule.spaced(policy.maxDelay)),
    Schedule.jittered
  )

/**
 * Runs `session(connection)` on a fresh connection, forever. When the
 * connection drops (or the session fails with a BrokerError) it logs, waits on
 * the reconnect schedule, and starts again; the schedule restarts after each
 * connection that came up. Fails only with a TopologyError.
 */
export const supervise = <R>(
  name: string,
  url: Redacted.Redacted<string>,
  policy: ReconnectPolicy,
  session: (connection: ChannelModel) => Effect.Effect<void, BrokerError | TopologyError, R | Scope.Scope>
): Effect.Effect<never, TopologyError, Exclude<R, Scope.Scope>> => {
  const once = Effect.scoped(
    Effect.gen(function*() {
      // openConnection logs the node it connected to.
      const connection = yield* openConnection(url, name)
      // Runs until the connection closes; a drop is reported as a success so the
      // outer loop reconnects with a fresh backoff schedule.
      return yield* Effect.raceFirst(session(connection), awaitClose(connection, "connection")).pipe(
        Effect.catchTag(
          "BrokerError",
          (e) =>
            Effect.logWarning(`RabbitMQ session lost (${name}): ${e.message}; reconnecting`).pipe(
              // A session that dies at once must not spin.
              Effect.zipRight(Effect.sleep(policy.initialDelay))
            )
        )
      )
    })
  )
  return once.pipe(
    Effect.tapErrorTag(
      "BrokerError",
      (e) => Effect.logWarning(`RabbitMQ unavailable (${name}): ${e.message}; retrying`)
    ),
    Effect.retry({ schedule: reconnectSchedule(policy), while: (e) => e._tag === "BrokerError" }),
    Effect.catchTag("BrokerError", (e) => Effect.die(e)),
    Effect.forever
  )
}

/**
 * `supervise` with AMQP_URL and AMQP_RECONNECT_*, in the background of the
 * current scope. A TopologyError stops the process through `Fatal`.
 */
export const superviseInBackground = <R>(
  name: string,
  session: (connection: ChannelModel) => Effect.Effect<void, BrokerError | TopologyError, R | Scope.Scope>
) =>
  Effect.gen(function*() {
    const url = yield* AmqpUrl
    const policy = yield* BrokerReconnect
    const fatal = yield* Fatal
    yield* supervise(name, url, policy, session).pipe(
      Effect.catchTag("TopologyError", (e) => Deferred.fail(fatal, e)),
      Effect.forkScoped
    )
  })
