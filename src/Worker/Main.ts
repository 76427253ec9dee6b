/** The worker's layer graph, composed once. */
import { Effect, Layer } from "effect"
import { WorkerMetricsPort } from "../Config.js"
import * as Otel from "../Observability/Otel.js"
import { TicketListCacheLive } from "../Cache/TicketListCache.js"
import { RedisLive } from "../Infra/Redis.js"
import { PgLive, runMigrations } from "../Sql.js"
import { WorkerLive } from "./Consumer.js"
import { EventStoreLive } from "./EventStore.js"
import { FaultsLive } from "./Faults.js"
import { WorkerMetricsLive } from "./Metrics.js"

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
