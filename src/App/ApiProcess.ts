/** The API process's layer graph, composed once: the HTTP server, and the outbox relay unless OUTBOX_RELAY=off. */
import { HttpServer } from "@effect/platform"
import { Config, Effect, Layer } from "effect"
import { PublisherLive } from "../Broker/Publisher.js"
import { OutboxRelayEnabled } from "../Config.js"
import * as Otel from "../Observability/Otel.js"
import { PIPELINE_DEPTH, RelayLive } from "../Outbox/Relay.js"
import { RedisLive } from "../Store/Redis.js"
import { PgLive, pgPool, runMigrations } from "../Store/Sql.js"
import { TicketListCacheLive } from "../Tickets/ListCache.js"
import { ensureAdmin } from "../Users/Admin.js"
import { runProcess } from "./Process.js"
import { HttpLive, NodeServerLive } from "./Server.js"

/** Schema first, then the bootstrap admin; the server listens only after both. */
export const MigrateOnStart = Layer.effectDiscard(Effect.zipRight(runMigrations, ensureAdmin))

/**
 * The relay, unless OUTBOX_RELAY=off (then another process must publish the outbox).
 * It has connections of its own (its batches in flight and the backlog gauge): under a
 * burst of writes the requests fill the main pool, and events must not queue behind them.
 */
const RelayUnlessOffLive = Layer.unwrapEffect(
  Effect.map(OutboxRelayEnabled, (enabled) =>
    enabled
      ? RelayLive.pipe(Layer.provide(pgPool(Config.succeed(PIPELINE_DEPTH + 1))))
      // npm start and Compose run it this way: informational, not a warning.
      : Layer.effectDiscard(Effect.logInfo("OUTBOX_RELAY=off: this process publishes no events (opsdesk relay does)")))
)

export const ApiAppLive = Layer.mergeAll(
  HttpLive.pipe(HttpServer.withLogAddress, Layer.provide(NodeServerLive)),
  RelayUnlessOffLive
).pipe(
  Layer.provide(MigrateOnStart),
  Layer.provide(Otel.layer({ serviceName: "opsdesk-api" })),
  Layer.provide([TicketListCacheLive(), PublisherLive]),
  Layer.provide([PgLive, RedisLive]),
  Layer.tap(() => Effect.logInfo("API started"))
)

/** The HTTP API, with its in-process outbox relay unless OUTBOX_RELAY=off (src/bin/api.ts, `opsdesk api`). */
export const apiProgram = runProcess(ApiAppLive)
