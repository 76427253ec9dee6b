import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { CurrentUser } from "../Auth/CurrentUser.js"
import { apiOf } from "../Kit/Api.js"
import { TicketsApi } from "./Api.js"
import { Tickets } from "./Tickets.js"

/** The listing is already JSON (the cached bytes, or freshly built): send it as is. */
const jsonBytes = (body: Uint8Array) => HttpServerResponse.uint8Array(body, { contentType: "application/json" })

export const HttpTicketsLive = HttpApiBuilder.group(apiOf(TicketsApi), "tickets", (handlers) =>
  Effect.gen(function*() {
    const tickets = yield* Tickets
    return handlers
      // Built by the service, hence valid: answered without a Schema encode pass.
      .handle("createTicket", ({ payload }) =>
        Effect.flatMap(CurrentUser, (actor) =>
          Effect.map(tickets.create(actor, payload), (ticket) =>
            HttpServerResponse.unsafeJson(ticket, { status: 201 }))))
      .handle("listTickets", ({ urlParams }) =>
        Effect.flatMap(CurrentUser, (actor) =>
          Effect.map(tickets.listJson(actor, urlParams), jsonBytes)))
      .handle("getTicket", ({ path }) =>
        Effect.flatMap(CurrentUser, (actor) =>
          tickets.get(actor, path.id)))
      .handle("updateTicket", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (actor) =>
          tickets.update(actor, path.id, payload)))
      .handle("changeTicketStatus", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (actor) =>
          tickets.changeStatus(actor, path.id, payload.status)))
  })).pipe(Layer.provide(Tickets.Default))
