/** The worker's layer graph, composed once. */
import { Effect, Layer } from "effect"
import { WorkerMetricsPort } from "../Config.js"
import * as Otel from "../Observability/Otel.js"
import { RedisLive } from "../Store/Redis.js"
import { PgLive, runMigrations } from "../Store/Sql.js"
import { TicketListCacheLive } from "../Tickets/ListCache.js"
import { WorkerLive } from "../Worker/Consumer.js"
import { EventStoreLive } from "../Worker/EventStore.js"
import { FaultsLive } from "../Worker/Faults.js"
import { WorkerMetricsLive } from "../Worker/Metrics.js"

const MigrateOnStart = Layer.effectDiscard(runMigrations)

const ObservabilityLive = Layer.unwrapEffect(
  Effect.map(WorkerMetricsPort, (port) => Otel.layer({ serviceName: "opsdesk-worker", metricsPort: port }))
)

export const WorkerAppLive = WorkerLive.pipe(
  Layer.provide(MigrateOnStart),
  Layer.provide(ObservabilityLive),
  Layer.provide([EventStoreLive, TicketListCacheLive(), FaultsLive, WorkerMetricsLive]),
  Layer.provide([PgLive, RedisLive]),
  Layer.tap(() => Effect.logInfo("Worker started"))
)
