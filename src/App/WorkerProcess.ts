/** The worker's layer graph, composed once. */
import { Effect, Layer } from "effect"
import { MetricsToken, WorkerMetricsHost, WorkerMetricsPort } from "../Config.js"
import * as Otel from "../Observability/Otel.js"
import { RedisLive } from "../Store/Redis.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { TicketListCacheLive } from "../Tickets/ListCache.js"
import { WorkerLive } from "../Worker/Consumer.js"
import { EventStoreLive } from "../Worker/EventStore.js"
import { FaultsLive } from "../Worker/Faults.js"
import { WorkerMetricsLive } from "../Worker/Metrics.js"

const MigrateOnStart = Layer.effectDiscard(runMigrations)

/** The worker's SDK and its metrics endpoint (WORKER_METRICS_HOST:WORKER_METRICS_PORT, METRICS_TOKEN). */
export const WorkerObservabilityLive = Layer.unwrapEffect(
  Effect.map(
    Effect.all({ port: WorkerMetricsPort, host: WorkerMetricsHost, token: MetricsToken }),
    ({ host, port, token }) =>
      Otel.layer({ serviceName: "opsdesk-worker", metricsPort: port, metricsHost: host, metricsToken: token })
  )
)

export const WorkerAppLive = WorkerLive.pipe(
  Layer.provide(MigrateOnStart),
  Layer.provide(WorkerObservabilityLive),
  Layer.provide([EventStoreLive, TicketListCacheLive(), FaultsLive, WorkerMetricsLive]),
  Layer.provide([PgLive, RedisLive]),
  Layer.tap(() => Effect.logInfo("Worker started"))
)
