/** The worker's layer graph, composed once. */
import { Effect, Layer } from "effect"
import { MetricsToken, WorkerMetricsHost, WorkerMetricsPort } from "../Config.js"
import { DispatcherLive } from "../Notifications/Dispatcher.js"
import { EmailSenderLive } from "../Notifications/Email.js"
import { DeliveriesRepo } from "../Notifications/Repo.js"
import * as Otel from "../Observability/Otel.js"
import { RetentionScheduleLive } from "../Retention/Retention.js"
import { RedisLive } from "../Store/Redis.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { TicketListCacheLive } from "../Tickets/ListCache.js"
import { WebhookSenderLive } from "../Webhooks/Channel.js"
import { WorkerLive } from "../Worker/Consumer.js"
import { CrashCounterLive } from "../Worker/CrashCounter.js"
import { EventStoreLive } from "../Worker/EventStore.js"
import { FaultsLive } from "../Worker/Faults.js"
import { WorkerMetricsLive } from "../Worker/Metrics.js"
import { WorkerRegistryLive } from "../Worker/Registry.js"
import { runProcess } from "./Process.js"

const MigrateOnStart = Layer.effectDiscard(runMigrations)

/** The worker's SDK and its metrics endpoint (WORKER_METRICS_HOST:WORKER_METRICS_PORT, METRICS_TOKEN). */
export const WorkerObservabilityLive = Layer.unwrapEffect(
  Effect.map(
    Effect.all({ port: WorkerMetricsPort, host: WorkerMetricsHost, token: MetricsToken }),
    ({ host, port, token }) =>
      Otel.layer({ serviceName: "opsdesk-worker", metricsPort: port, metricsHost: host, metricsToken: token })
  )
)

/** The delivery dispatcher (DISPATCHER=false: off) with its channels' senders. */
export const DispatchLive = DispatcherLive.pipe(
  Layer.provide([DeliveriesRepo.Default, EmailSenderLive, WebhookSenderLive])
)

/** The registry is built before the worker, so it is released after its drain and writes the final counters. */
export const WorkerAppLive = Layer.mergeAll(
  WorkerLive.pipe(Layer.provide(WorkerRegistryLive)),
  RetentionScheduleLive,
  DispatchLive
)
  .pipe(
    Layer.provide(MigrateOnStart),
    Layer.provide(WorkerObservabilityLive),
    Layer.provide([EventStoreLive, CrashCounterLive, TicketListCacheLive(), FaultsLive, WorkerMetricsLive]),
    Layer.provide([PgLive, RedisLive]),
    Layer.tap(() => Effect.logInfo("Worker started"))
  )

/** The worker that consumes the event queues (src/bin/worker.ts, `opsdesk worker`). */
export const workerProgram = runProcess(WorkerAppLive)
