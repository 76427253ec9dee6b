/**
 * The ticket use cases. Every write runs in one transaction that also writes
 * its audit row and its outbox event; nothing here talks to RabbitMQ.
 * Listings are cached per caller scope (`staff` or `customer:<id>`) in Redis;
 * the worker invalidates them on ticket events.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { type Actor, isStaff } from "../Auth/CurrentUser.js"
import { Unauthorized } from "../Auth/Errors.js"
import {
  makeEvent,
  type TicketCreated,
  type TicketField,
  type TicketStatus,
  type TicketStatusChanged,
  type TicketUpdated
} from "../Domain/Events.js"
import type { ValidationError } from "../Kit/Errors.js"
import { DEFAULT_LIMIT, positionOf, toPage } from "../Kit/Pagination.js"
import { tracedFn } from "../Observability/Span.js"
import { appendEvent, RelayWake } from "../Outbox/Outbox.js"
import { recordAudit } from "../Store/Audit.js"
import { FOREIGN_KEY_VIOLATION, sqlState } from "../Store/SqlState.js"
import {
  canTransition,
  type CreateTicketRequest,
  type ListTicketsParams,
  type Ticket,
  type UpdateTicketRequest
} from "./Domain.js"
import { InvalidAssignee, InvalidTransition } from "./Errors.js"
import { TicketListCache } from "./ListCache.js"
import { canAssign, canMoveTo, visibleOrNotFound } from "./Policy.js"
import { FIELD_ORDER, type TicketChanges, type TicketRow, TicketsRepo, toTicket } from "./Repo.js"

/** The cache key part for a listing: every filter, the limit and the cursor, in a fixed order. */
export const listQueryKey = (params: ListTicketsParams): string =>
  `status=${params.status ?? ""}&assigneeId=${params.assigneeId ?? ""}&priority=${params.priority ?? ""}` +
  `&limit=${params.limit ?? DEFAULT_LIMIT}&cursor=${params.cursor ?? ""}`

export const listScope = (actor: Actor): string => (isStaff(actor) ? "staff" : `customer:${actor.id}`)

export class Tickets extends Effect.Service<Tickets>()("OpsDesk/Tickets", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* TicketsRepo
    const cache = yield* TicketListCache
    // After each write's commit (its events are then visible to the relay's claim).
    const relay = yield* RelayWake

    const create = tracedFn("Tickets.create")(function*(actor: Actor, input: CreateTicketRequest) {
      const now = new Date()
      const at = now.toISOString()
      const ticket: Ticket = {
        id: randomUUID(),
        title: input.title,
        description: input.description,
        status: "open",
        priority: input.priority ?? "medium",
        ownerId: actor.id,
        assigneeId: null,
        createdAt: at,
        updatedAt: at
      }
      const event = makeEvent<TicketCreated>("ticket.created", {
        id: ticket.id,
        title: ticket.title,
        description: ticket.description,
        status: ticket.status,
        priority: ticket.priority,
        ownerId: ticket.ownerId,
        assigneeId: ticket.assigneeId,
        createdAt: ticket.createdAt
      }, now)
      // One statement is one transaction: the ticket, its audit row and its
      // outbox event commit together or not at all. An explicit BEGIN/COMMIT
      // around it would add two round trips on the API's busiest write.
      yield* repo.insertWithEvent(ticket, event).pipe(
        Effect.catchTag("SqlError", (e) =>
          // The owner vanished after the token was issued.
          sqlState(e) === FOREIGN_KEY_VIOLATION
            ? Effect.fail(new Unauthorized({ message: "the user of this token no longer exists" }))
            : Effect.die(e))
      )
      yield* relay.wake
      return ticket
    })

    /** The ticket if the actor may see it; otherwise TicketNotFound, as if it did not exist. */
    const findVisible = (actor: Actor, id: string) => Effect.flatMap(repo.findById(id), visibleOrNotFound(actor, id))

    const get = tracedFn("Tickets.get")(function*(actor: Actor, id: string) {
      return toTicket(yield* findVisible(actor, id))
    })

    const lockVisible = (actor: Actor, id: string) => Effect.flatMap(repo.lockById(id), visibleOrNotFound(actor, id))

    /**
     * The listing as JSON bytes, exactly as they are cached: a hit is returned
     * without decoding or re-encoding anything. The hottest path of the API,
     * so deliberately without a span of its own (a span costs about as much
     * as the rest of a cache hit's own work).
     */
    const listJson = (actor: Actor, params: ListTicketsParams): Effect.Effect<Uint8Array, ValidationError> =>
      Effect.gen(function*() {
        const after = yield* positionOf(params.cursor)
        const lookup = yield* cache.lookup(listScope(actor), listQueryKey(params))
        if (Option.isSome(lookup.hit)) return lookup.hit.value
        const limit = params.limit ?? DEFAULT_LIMIT
        const rows = yield* repo.list({
          ownerId: isStaff(actor) ? undefined : actor.id,
          status: params.status,
          assigneeId: params.assigneeId,
          priority: params.priority,
          after,
          limit
        })
        const json = JSON.stringify(toPage(rows, limit, toTicket))
        yield* lookup.store(json)
        return Buffer.from(json)
      })

    const validateAssignee = (assigneeId: string) =>
      repo.roleOf(assigneeId).pipe(
        Effect.flatMap((role) =>
          Option.isSome(role) && role.value !== "customer"
            ? Effect.void
            : Effect.fail(
              new InvalidAssignee({ field: "assigneeId", message: "assigneeId must be an existing agent or admin" })
            )
        )
      )

    const update = tracedFn("Tickets.update")(function*(actor: Actor, id: string, patch: UpdateTicketRequest) {
      return yield* sql.withTransaction(Effect.gen(function*() {
        const current = yield* lockVisible(actor, id)
        if (patch.assigneeId !== undefined) yield* canAssign(actor)
        const changes = diff(current, patch)
        const changedFields = FIELD_ORDER.filter((f) => f in changes)
        if (changedFields.length === 0) return toTicket(current)
        if (changes.assigneeId !== undefined && changes.assigneeId !== null) yield* validateAssignee(changes.assigneeId)
        const now = new Date()
        const updated = yield* repo.update(id, changes, now)
        yield* recordAudit({
          actorId: actor.id,
          action: "ticket.update",
          entity: "ticket",
          entityId: id,
          changes: Object.fromEntries(changedFields.map((f) => [f, { from: current[f], to: updated[f] }]))
        })
        yield* appendEvent(makeEvent<TicketUpdated>("ticket.updated", {
          id,
          ownerId: updated.ownerId,
          assigneeId: updated.assigneeId,
          changedFields,
          updatedBy: actor.id,
          updatedAt: updated.updatedAt.toISOString()
        }, now))
        return toTicket(updated)
      })).pipe(Effect.catchTag("SqlError", Effect.die), Effect.tap(() => relay.wake))
    })

    const changeStatus = tracedFn("Tickets.changeStatus")(function*(actor: Actor, id: string, to: TicketStatus) {
      return yield* sql.withTransaction(Effect.gen(function*() {
        const current = yield* lockVisible(actor, id)
        yield* canMoveTo(actor, to)
        const from = current.status
        if (!canTransition(from, to)) {
          return yield* new InvalidTransition({ message: `cannot change status from ${from} to ${to}` })
        }
        const now = new Date()
        const updated = yield* repo.setStatus(id, to, now)
        yield* recordAudit({
          actorId: actor.id,
          action: "ticket.status_change",
          entity: "ticket",
          entityId: id,
          changes: { from, to }
        })
        yield* appendEvent(makeEvent<TicketStatusChanged>("ticket.status_changed", {
          id,
          from,
          to,
          changedBy: actor.id,
          changedAt: now.toISOString(),
          ownerId: updated.ownerId,
          assigneeId: updated.assigneeId
        }, now))
        return toTicket(updated)
      })).pipe(Effect.catchTag("SqlError", Effect.die), Effect.tap(() => relay.wake))
    })

    return { create, get, findVisible, listJson, update, changeStatus } as const
  }),
  dependencies: [TicketsRepo.Default, RelayWake.Default]
}) {}

/** Only the fields whose value actually changes. */
const diff = (current: TicketRow, patch: UpdateTicketRequest): TicketChanges => {
  const changes: { -readonly [K in TicketField]?: TicketChanges[K] } = {}
  if (patch.title !== undefined && patch.title !== current.title) changes.title = patch.title
  if (patch.description !== undefined && patch.description !== current.description) {
    changes.description = patch.description
  }
  if (patch.priority !== undefined && patch.priority !== current.priority) changes.priority = patch.priority
  if (patch.assigneeId !== undefined) {
    const assigneeId = patch.assigneeId === null ? null : patch.assigneeId.toLowerCase()
    if (assigneeId !== current.assigneeId) changes.assigneeId = assigneeId
  }
  return changes
}
