import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { type Actor, CurrentUser } from "../Auth/CurrentUser.js"
import { Api } from "../App/Api.js"
import type { CreateTicketRequest, ListTicketsParams } from "./Domain.js"
import { Tickets } from "./Tickets.js"

/** The listing is already JSON (the cached bytes, or freshly built): send it as is. */
const jsonBytes = (body: Uint8Array) => HttpServerResponse.uint8Array(body, { contentType: "application/json" })

/**
 * The answers of the two hottest endpoints, shared by their HttpApi handlers
 * below and by the fast path in HotRoutes.ts, so both answer alike.
 */
export const ticketResponses = (tickets: Tickets) => ({
  // Built by the service, hence valid: answered without a Schema encode pass.
  create: (actor: Actor, payload: CreateTicketRequest) =>
    Effect.map(tickets.create(actor, payload), (ticket) => HttpServerResponse.unsafeJson(ticket, { status: 201 })),
  list: (actor: Actor, urlParams: ListTicketsParams) => Effect.map(tickets.listJson(actor, urlParams), jsonBytes)
})

export const HttpTicketsLive = HttpApiBuilder.group(Api, "tickets", (handlers) =>
  Effect.gen(function*() {
    const tickets = yield* Tickets
    const respond = ticketResponses(tickets)
    return handlers
      .handle("createTicket", ({ payload }) => Effect.flatMap(CurrentUser, (actor) => respond.create(actor, payload)))
      .handle("listTickets", ({ urlParams }) => Effect.flatMap(CurrentUser, (actor) => respond.list(actor, urlParams)))
      .handle("getTicket", ({ path }) => Effect.flatMap(CurrentUser, (actor) => tickets.get(actor, path.id)))
      .handle("updateTicket", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (actor) => tickets.update(actor, path.id, payload)))
      .handle("changeTicketStatus", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (actor) => tickets.changeStatus(actor, path.id, payload.status)))
  })).pipe(Layer.provide(Tickets.Default))
