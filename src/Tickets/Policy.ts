/**
 * Ticket authorization.
 * - Agents and admins see and change every ticket.
 * - Customers see and change only their own; another customer's ticket is a
 *   404, so its existence does not leak.
 * - Customers may edit title, description and priority, but not assign.
 * - Customers may only reopen (resolved|closed → open) or close
 *   (resolved → closed) their own tickets.
 */
import { Effect, Option } from "effect"
import { type Actor, isStaff } from "../Auth/CurrentUser.js"
import type { TicketStatus } from "../Domain/Events.js"
import { Forbidden } from "../Kit/Errors.js"
import { CUSTOMER_TARGETS } from "./Domain.js"
import { TicketNotFound } from "./Errors.js"

export const canSee = (actor: Actor, ticket: { readonly ownerId: string }): boolean =>
  isStaff(actor) || ticket.ownerId === actor.id

export const requireVisible = <T extends { readonly id: string; readonly ownerId: string }>(actor: Actor, ticket: T) =>
  canSee(actor, ticket) ? Effect.succeed(ticket) : Effect.fail(TicketNotFound.of(ticket.id))

/** For a lookup by id: TicketNotFound when there is no such ticket or the actor may not see it. */
export const visibleOrNotFound =
  (actor: Actor, id: string) =>
  <T extends { readonly id: string; readonly ownerId: string }>(found: Option.Option<T>) =>
    Option.isSome(found) ? requireVisible(actor, found.value) : Effect.fail(TicketNotFound.of(id))

export const canAssign = (actor: Actor): Effect.Effect<void, Forbidden> =>
  isStaff(actor) ? Effect.void : Effect.fail(new Forbidden({ message: "customers may not assign tickets" }))

export const canMoveTo = (actor: Actor, to: TicketStatus): Effect.Effect<void, Forbidden> =>
  isStaff(actor) || CUSTOMER_TARGETS.includes(to)
    ? Effect.void
    : Effect.fail(
      new Forbidden({ message: `customers may only reopen or close their tickets, not move them to ${to}` })
    )
