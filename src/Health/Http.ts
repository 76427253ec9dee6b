/**
 * Liveness and readiness. `/health` answers while the process runs;
 * `/ready` checks PostgreSQL (`SELECT 1`), Redis (`PING`) and the RabbitMQ
 * publisher's connection, each bounded by a short timeout, and answers 503
 * naming whatever is down; `broker.node` says which RabbitMQ node the
 * publisher is on (a cluster's AMQP_URL lists several).
 */
import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { Publisher } from "../Broker/Publisher.js"
import { apiOf } from "../Kit/Api.js"
import { Redis } from "../Store/Redis.js"
import { HealthApi, NotReady } from "./Api.js"

const CHECK_TIMEOUT = "1 second"

const probe = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  check.pipe(
    Effect.timeoutTo({ duration: CHECK_TIMEOUT, onTimeout: () => false, onSuccess: (ok) => ok }),
    Effect.catchAllCause(() => Effect.succeed(false)),
    Effect.map((ok) => (ok ? "up" as const : "down" as const))
  )

export const HttpHealthLive = HttpApiBuilder.group(apiOf(HealthApi), "health", (handlers) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const redis = yield* Redis
    const publisher = yield* Publisher
    const alive = { status: "ok" as const }
    return handlers
      .handle("health", () => Effect.succeed(alive))
      .handle("ready", () =>
        Effect.all({
          database: probe(Effect.as(sql`SELECT 1`, true)),
          redis: probe(Effect.map(redis.use((c) => c.ping()), (pong) => pong === "PONG")),
          rabbitmq: probe(publisher.isConnected)
        }, { concurrency: "unbounded" }).pipe(
          Effect.bindTo("checks"),
          Effect.bind("node", () => publisher.node),
          Effect.flatMap(({ checks, node }) => {
            const down = Object.entries(checks).filter(([, state]) => state === "down").map(([name]) => name)
            const broker = {
              status: checks.rabbitmq,
              ...Option.match(node, { onNone: () => ({}), onSome: (n) => ({ node: n }) })
            }
            return down.length === 0
              ? Effect.succeed({ status: "ready" as const, checks, broker })
              : Effect.fail(new NotReady({ checks, broker, down }))
          })
        ))
  }))
