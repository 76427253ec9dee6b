/** The authenticated caller, provided per request by the Authentication middleware. */
import { Context, Schema } from "effect"

export const Role = Schema.Literal("admin", "agent", "customer")
export type Role = typeof Role.Type

export interface Actor {
  readonly id: string
  readonly username: string
  readonly role: Role
}

export class CurrentUser extends Context.Tag("OpsDesk/Auth/CurrentUser")<CurrentUser, Actor>() {}

/** Agents and admins see and handle every ticket. */
export const isStaff = (actor: Actor): boolean => actor.role !== "customer"
