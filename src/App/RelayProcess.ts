/**
 * The standalone relay's layer graph (`opsdesk relay`, `npm run start:relay`):
 * the outbox relay and nothing else, for deployments that run the APIs with
 * OUTBOX_RELAY=off and publish from one or more processes of their own. Any
 * number of relays (in APIs or standalone) can run at once: each batch claims
 * its rows with FOR UPDATE SKIP LOCKED (Outbox/Relay.ts), so no two publish
 * the same row at the same time.
 *
 * Its Prometheus endpoint (the relay's publish and backlog metrics) is on
 * RELAY_METRICS_HOST:RELAY_METRICS_PORT (127.0.0.1:9465; 0 turns it off).
 */
import { Config, Effect, Layer } from "effect"
import { PublisherLive } from "../Broker/Publisher.js"
import { MetricsToken, RelayMetricsHost, RelayMetricsPort } from "../Config.js"
import * as Otel from "../Observability/Otel.js"
import { PIPELINE_DEPTH, RelayLive } from "../Outbox/Relay.js"
import { pgPool, runMigrations } from "../Store/Sql.js"
import { runProcess } from "./Process.js"

/** The outbox table must exist before the first claim. */
const MigrateOnStart = Layer.effectDiscard(runMigrations)

const RelayObservabilityLive = Layer.unwrapEffect(
  Effect.map(
    Effect.all({ port: RelayMetricsPort, host: RelayMetricsHost, token: MetricsToken }),
    ({ host, port, token }) =>
      Otel.layer({ serviceName: "opsdesk-relay", metricsPort: port, metricsHost: host, metricsToken: token })
  )
)

/** As in the API: a pool sized to the batches in flight plus the backlog gauge. */
const RelayPgLive = pgPool(Config.succeed(PIPELINE_DEPTH + 1))

export const RelayAppLive = RelayLive.pipe(
  Layer.provide(MigrateOnStart),
  Layer.provide(RelayObservabilityLive),
  Layer.provide(PublisherLive),
  Layer.provide(RelayPgLive),
  Layer.tap(() => Effect.logInfo("Relay started"))
)

/** The outbox relay on its own (src/bin/relay.ts, `opsdesk relay`). */
export const relayProgram = runProcess(RelayAppLive)
