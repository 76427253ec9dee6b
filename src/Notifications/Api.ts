/** The caller's own in-app notifications: list, unread count, mark read, and the live stream. */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication } from "../Auth/Api.js"
import { ValidationError } from "../Kit/Errors.js"
import {
  ListNotificationsParams,
  Notification,
  NotificationIdPath,
  NotificationNotFound,
  NotificationPage,
  ReadAllResult,
  UnreadCount
} from "./InApp.js"
import { TooManyStreams } from "./Stream.js"

/** The stream's body, as /openapi.json documents it. */
const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({
  description: "Server-Sent Events: `notification` events (data: a Notification as JSON; id: the highest " +
    "notification id sent so far), a `: heartbeat` comment every NOTIFICATIONS_STREAM_HEARTBEAT_MS, and a last " +
    "`end` event (data: `{ reason }`, `shutdown`, `expired` or `revoked`) before the server closes it"
})

export const StreamHeaders = Schema.Struct({
  "last-event-id": Schema.optional(Schema.String.annotations({
    description: "The last event id received: the stream first replays every notification after it"
  }))
})

export class NotificationsApi extends HttpApiGroup.make("notifications")
  .annotate(
    OpenApi.Description,
    "The caller's in-app notifications: list, unread count, mark read, and a live Server-Sent Events stream."
  )
  .add(
    HttpApiEndpoint.get("listNotifications", "/")
      .annotate(
        OpenApi.Description,
        "Only the caller's own. `unread=true` leaves out those already read; `limit` 1-100 (default 20), and the page's `nextCursor` as `cursor` for the next page."
      )
      .setUrlParams(ListNotificationsParams)
      .addSuccess(NotificationPage)
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "The caller's in-app notifications, newest first, keyset-paginated")
  )
  .add(
    HttpApiEndpoint.get("unreadCount", "/unread-count")
      .annotate(
        OpenApi.Description,
        "For a badge: the same count `GET /v1/notifications?unread=true` would page through."
      )
      .addSuccess(UnreadCount)
      .annotate(OpenApi.Summary, "How many of the caller's in-app notifications are unread")
  )
  .add(
    HttpApiEndpoint.get("streamNotifications", "/stream")
      .setHeaders(StreamHeaders)
      .addSuccess(EventStream)
      .addError(ValidationError, { status: 400 })
      .addError(TooManyStreams, { status: 429 })
      .annotate(OpenApi.Summary, "New in-app notifications of the caller, live (Server-Sent Events)")
      .annotate(
        OpenApi.Description,
        "Authenticated like every route (`Authorization: Bearer`; use a fetch-based SSE client, as the browser's " +
          "EventSource cannot send it). With `Last-Event-ID`, every notification after that id is sent first. " +
          "429 when the caller already has NOTIFICATIONS_STREAM_MAX_PER_USER streams open on this server"
      )
  )
  .add(
    HttpApiEndpoint.post("markAllNotificationsRead", "/read-all")
      .annotate(
        OpenApi.Description,
        "Marks every unread in-app notification of the caller read and answers how many changed."
      )
      .addSuccess(ReadAllResult)
      .annotate(OpenApi.Summary, "Mark every unread in-app notification of the caller read")
  )
  .add(
    HttpApiEndpoint.post("markNotificationRead", "/:id/read")
      .setPath(NotificationIdPath)
      .addSuccess(Notification)
      .addError(NotificationNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Mark one of the caller's notifications read (again: no change)")
      .annotate(OpenApi.Description, "404 for an unknown id and for another user's notification alike")
  )
  .middleware(Authentication)
  .prefix("/v1/notifications")
{}
