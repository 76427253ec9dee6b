/** Who may do what with users: only admins create, list, change, deactivate users or reset their passwords. */
import { Effect } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import { Forbidden } from "../Kit/Errors.js"

export const canCreateUser = (actor: Actor): Effect.Effect<void, Forbidden> =>
  actor.role === "admin" ? Effect.void : Effect.fail(new Forbidden({ message: "only admins may create users" }))

export const canManageUsers = (actor: Actor): Effect.Effect<void, Forbidden> =>
  actor.role === "admin" ? Effect.void : Effect.fail(new Forbidden({ message: "only admins may manage users" }))
