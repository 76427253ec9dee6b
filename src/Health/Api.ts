/** Liveness and readiness endpoints (no authentication). */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"

const Check = Schema.Literal("up", "down")
const Checks = Schema.Struct({ database: Check, redis: Check, rabbitmq: Check })

export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { status: Schema.Literal("unavailable"), checks: Checks, down: Schema.Array(Schema.String) },
  { description: "A dependency is unreachable; `down` names it" }
) {}

export class HealthApi extends HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness")
  )
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready"), checks: Checks }))
      .addError(NotReady, { status: 503 })
      .annotate(OpenApi.Summary, "Readiness: PostgreSQL, Redis and RabbitMQ reachable")
  )
{}
