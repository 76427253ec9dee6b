/**
 * The real worker (and, where needed, the outbox relay) in-process against the
 * real RabbitMQ (a vhost of the test's own), PostgreSQL and Redis, for the
 * broker attacks of test/security/broker-*.test.ts.
 */
import type { ConfirmChannel, GetMessage, Options } from "amqplib"
import { Context, Effect, Layer, Metric, type MetricKey, type MetricState, Ref, type Scope } from "effect"
import { PublisherLive } from "../../../src/Broker/Publisher.js"
import { FatalLive } from "../../../src/Fatal.js"
import { RelayLive } from "../../../src/Outbox/Relay.js"
import { TicketListCacheLive } from "../../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../../src/Worker/EventStore.js"
import { Faults, HandlerError } from "../../../src/Worker/Faults.js"
import { WorkerMetrics, WorkerMetricsLive } from "../../../src/Worker/Metrics.js"
import { configFrom } from "../../support/Env.js"

export const brokerConfig = (url: string, extra: Record<string, string | number> = {}) =>
  configFrom({
    AMQP_URL: url,
    MAX_RETRIES: 1,
    RETRY_INITIAL_DELAY_MS: 100,
    RETRY_MAX_DELAY_MS: 200,
    IMMEDIATE_RETRIES: 0,
    IMMEDIATE_RETRY_DELAY_MS: 5,
    METRICS_INTERVAL_MS: 600_000,
    AMQP_RECONNECT_INITIAL_MS: 100,
    AMQP_RECONNECT_MAX_MS: 500,
    OUTBOX_POLL_INTERVAL_MS: 100,
    ...extra
  })

/** Event ids whose handler fails on every attempt. */
export const failingIds = Effect.runSync(Ref.make(new Set<string>()))
const FaultsTest = Layer.succeed(
  Faults,
  Faults.of({
    check: (event) =>
      Effect.flatMap(
        Ref.get(failingIds),
        (ids) => ids.has(event.eventId) ? Effect.fail(new HandlerError({ message: "Simulated failure" })) : Effect.void
      )
  })
)

/** Starts the worker in `scope`; returns its metrics. */
export const startWorker = (url: string, scope: Scope.Scope) =>
  Layer.buildWithScope(
    WorkerLive.pipe(
      Layer.provideMerge(
        Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsTest, WorkerMetricsLive, FatalLive)
      )
    ),
    scope
  ).pipe(Effect.withConfigProvider(brokerConfig(url)), Effect.map((ctx) => Context.get(ctx, WorkerMetrics)))

/** Starts the outbox relay (with its publisher) in `scope`. */
export const startRelay = (url: string, scope: Scope.Scope, extra: Record<string, string | number> = {}) =>
  Layer.buildWithScope(RelayLive.pipe(Layer.provide(PublisherLive), Layer.provide(FatalLive)), scope).pipe(
    Effect.withConfigProvider(brokerConfig(url, extra))
  )

export const publishRaw = (
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  body: Buffer,
  options: Options.Publish = {}
) =>
  Effect.promise(async () => {
    channel.publish(exchange, routingKey, body, { persistent: true, ...options })
    await channel.waitForConfirms()
  })

/** Takes every ready message off a queue (acked: they are gone). */
export const getAll = (channel: ConfirmChannel, queue: string) =>
  Effect.promise(async () => {
    const out: Array<GetMessage> = []
    for (;;) {
      const m = await channel.get(queue, { noAck: true })
      if (m === false) return out
      out.push(m)
    }
  })

export const depth = (channel: ConfirmChannel, queue: string) =>
  Effect.promise(() => channel.checkQueue(queue)).pipe(Effect.map((q) => q.messageCount))

export interface Series {
  readonly tags: Readonly<Record<string, string>>
  readonly state: MetricState.MetricState.Untyped
}

/** Every series of the metric called `name` in this process, with its tags. */
export const seriesOf = (name: string) =>
  Effect.map(
    Metric.snapshot,
    (pairs) =>
      pairs.filter((p) => (p.metricKey as MetricKey.MetricKey.Untyped).name === name).map((p): Series => ({
        tags: Object.fromEntries(p.metricKey.tags.map((t) => [t.key, t.value])),
        state: p.metricState
      }))
  )

/** The sum of a counter's series (0 when it has none). */
export const counterTotal = (name: string) =>
  Effect.map(
    seriesOf(name),
    (series) =>
      series.reduce(
        (n, s) => n + ("count" in s.state && typeof s.state.count === "number" ? s.state.count : 0),
        0
      )
  )
