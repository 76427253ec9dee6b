/** Handlers of the `ops` group: admins only (403 for any other role), everything through the Ops service. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer } from "effect"
import { type Actor, CurrentUser } from "../Auth/CurrentUser.js"
import { apiOf } from "../Kit/Api.js"
import { Forbidden } from "../Kit/Errors.js"
import { OpsApi } from "./Api.js"
import { Ops } from "./Ops.js"

export const requireAdmin = (actor: Actor): Effect.Effect<Actor, Forbidden> =>
  actor.role === "admin"
    ? Effect.succeed(actor)
    : Effect.fail(new Forbidden({ message: "the ops dashboard is for admins only" }))

const admin = Effect.flatMap(CurrentUser, requireAdmin)

export const HttpOpsLive = HttpApiBuilder.group(apiOf(OpsApi), "ops", (handlers) =>
  Effect.gen(function*() {
    const ops = yield* Ops
    return handlers
      .handle("getOverview", ({ urlParams }) => Effect.zipRight(admin, ops.overview({ dlqLimit: urlParams.dlqLimit })))
      .handle("getHistory", () => Effect.zipRight(admin, ops.history()))
      .handle("listDlq", ({ urlParams }) => Effect.zipRight(admin, ops.listDlq(urlParams)))
      .handle("getDlqMessage", ({ path }) => Effect.zipRight(admin, ops.getDlqMessage(path.id)))
      .handle("listDeliveries", ({ urlParams }) => Effect.zipRight(admin, ops.listDeliveries(urlParams)))
      .handle("retryDeliveries", ({ payload }) =>
        Effect.flatMap(admin, (actor) =>
          ops.retryDeliveries(actor, "id" in payload ? { id: payload.id } : payload)))
      .handle("replayDlq", ({ payload }) =>
        Effect.flatMap(admin, (actor) => ("id" in payload
          ? ops.replayOne(actor, payload.id, payload.force ?? false)
          : ops.replayAll(actor, payload.force ?? false))))
      .handle("discardDlq", ({ payload }) =>
        Effect.flatMap(admin, (actor) => ops.discard(actor, payload.id)))
      .handle("purgeDlq", () => Effect.flatMap(admin, (actor) => ops.purge(actor)))
  })).pipe(Layer.provide(Ops.Default))
