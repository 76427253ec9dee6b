/** The whole HTTP API, one group per feature. */
import { HttpApi, OpenApi } from "@effect/platform"
import { AuthApi } from "../Auth/Api.js"
import { HealthApi } from "../Health/Api.js"
import { API_ID } from "../Kit/Api.js"
import { MessagesApi } from "../Messages/Api.js"
import { NotificationsApi } from "../Notifications/Api.js"
import { OpsApi } from "../Ops/Api.js"
import { TicketsApi } from "../Tickets/Api.js"
import { UsersApi } from "../Users/Api.js"
import { WebhooksApi } from "../Webhooks/Api.js"
import { openApiContract } from "./OpenApiContract.js"

export class Api extends HttpApi.make(API_ID)
  .add(HealthApi)
  .add(AuthApi)
  .add(UsersApi)
  .add(TicketsApi)
  .add(MessagesApi)
  .add(NotificationsApi)
  .add(OpsApi)
  .add(WebhooksApi)
  .annotate(OpenApi.Title, "OpsDesk API")
  .annotate(OpenApi.Transform, openApiContract)
  .annotate(OpenApi.Version, "1.0.0")
  .annotate(
    OpenApi.Description,
    "Helpdesk tickets and messages. Every write emits a domain event through the transactional outbox."
  )
{}
