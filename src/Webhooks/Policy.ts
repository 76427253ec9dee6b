/** Who may do what with webhooks: only admins see or change subscriptions (their URLs and delivery logs are internal). */
import { Effect } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import { Forbidden } from "../Kit/Errors.js"

export const canManageWebhooks = (actor: Actor): Effect.Effect<void, Forbidden> =>
  actor.role === "admin" ? Effect.void : Effect.fail(new Forbidden({ message: "only admins may manage webhooks" }))
