/** Liveness and readiness endpoints (no authentication). */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"

const Check = Schema.Literal("up", "down")
const Checks = Schema.Struct({ database: Check, redis: Check, rabbitmq: Check })
const Broker = Schema.Struct({
  status: Check,
  node: Schema.optional(Schema.String).annotations({
    description:
      "The RabbitMQ node the publisher is connected to, `amqp://host:port` (with a cluster's AMQP_URL, the one it failed over to); absent while disconnected"
  })
})

export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { checks: Checks, broker: Broker, down: Schema.Array(Schema.String) },
  { description: "A dependency is unreachable; `down` names it (the answer's `status` is the HTTP status, 503)" }
) {}

export class HealthApi extends HttpApiGroup.make("health")
  .annotate(
    OpenApi.Description,
    "Liveness and readiness: whether the process runs, and whether it can reach PostgreSQL and RabbitMQ."
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
      .annotate(
        OpenApi.Description,
        "Answers 200 while the process runs; it reads nothing, so a load balancer can poll it cheaply."
      )
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness")
  )
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .annotate(
        OpenApi.Description,
        "200 when PostgreSQL, Redis and RabbitMQ all answer; 503 naming the ones that do not (take the instance out of rotation). `broker.node` names the RabbitMQ node the publisher is on."
      )
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready"), checks: Checks, broker: Broker }))
      .addError(NotReady, { status: 503 })
      .annotate(OpenApi.Summary, "Readiness: PostgreSQL, Redis and RabbitMQ reachable")
  )
{}
