import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { Identity } from "../Auth/Identity.js"
import { Tokens } from "../Auth/Tokens.js"
import { apiOf } from "../Kit/Api.js"
import { traced } from "../Observability/Span.js"
import { NotificationsApi } from "./Api.js"
import { InAppNotifications } from "./InApp.js"
import { InAppFeed, openStream, parseLastEventId } from "./Stream.js"

/**
 * No cache may keep it, and a reverse proxy (nginx) must pass each event on
 * at once rather than buffer the response.
 */
const STREAM_HEADERS = { "cache-control": "no-cache, no-store", "x-accel-buffering": "no" }

export const HttpNotificationsLive = HttpApiBuilder.group(
  apiOf(NotificationsApi),
  "notifications",
  (handlers) =>
    Effect.gen(function*() {
      const inApp = yield* InAppNotifications
      const tokens = yield* Tokens
      const identity = yield* Identity
      // Built from these rows, hence valid: answered without a Schema encode pass.
      const json = <A>(value: A) => HttpServerResponse.unsafeJson(value)
      return handlers
        .handle(
          "listNotifications",
          ({ urlParams }) => Effect.flatMap(CurrentUser, (actor) => Effect.map(inApp.list(actor.id, urlParams), json))
        )
        .handle(
          "unreadCount",
          () => Effect.flatMap(CurrentUser, (actor) => Effect.map(inApp.unreadCount(actor.id), json))
        )
        .handle(
          "markAllNotificationsRead",
          () => Effect.flatMap(CurrentUser, (actor) => Effect.map(inApp.markAllRead(actor.id), json))
        )
        .handle(
          "markNotificationRead",
          ({ path }) => Effect.flatMap(CurrentUser, (actor) => Effect.map(inApp.markRead(actor.id, path.id), json))
        )
        .handle("streamNotifications", ({ headers, request }) =>
          Effect.gen(function*() {
            const actor = yield* CurrentUser
            const lastEventId = yield* parseLastEventId(headers["last-event-id"])
            // The middleware verified this very token; verifying it again is a cache hit, for its expiry.
            const token = (request.headers.authorization ?? "").replace(/^bearer /i, "").trim()
            const claims = yield* tokens.verify(token)
            const body = yield* openStream(actor, lastEventId, {
              recheck: Effect.asVoid(Effect.flatMap(tokens.verify(token), identity.resolve)),
              expiresAt: new Date(claims.exp * 1000)
            })
            return HttpServerResponse.stream(body, { contentType: "text/event-stream", headers: STREAM_HEADERS })
          }).pipe(traced("Notifications.stream")))
    })
).pipe(Layer.provide([InAppNotifications.Default, InAppFeed.Default, Tokens.Default, Identity.Default]))
