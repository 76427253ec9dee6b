import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Conflict, Forbidden, NotFound, ValidationError } from "../Kit/Errors.js"
import {
  ChangeStatusRequest,
  CreateTicketRequest,
  ListTicketsParams,
  Ticket,
  TicketIdPath,
  TicketPage,
  UpdateTicketRequest
} from "./Domain.js"

export class TicketsApi extends HttpApiGroup.make("tickets")
  .add(
    HttpApiEndpoint.post("createTicket", "/")
      .setPayload(CreateTicketRequest)
      .addSuccess(Ticket, { status: 201 })
      .annotate(OpenApi.Summary, "Open a ticket; the caller is its owner (emits ticket.created)")
  )
  .add(
    HttpApiEndpoint.get("listTickets", "/")
      .setUrlParams(ListTicketsParams)
      .addSuccess(TicketPage)
      .addError(ValidationError)
      .annotate(OpenApi.Summary, "Tickets visible to the caller, newest first, keyset-paginated")
  )
  .add(
    HttpApiEndpoint.get("getTicket", "/:id")
      .setPath(TicketIdPath)
      .addSuccess(Ticket)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.patch("updateTicket", "/:id")
      .setPath(TicketIdPath)
      .setPayload(UpdateTicketRequest)
      .addSuccess(Ticket)
      .addError(NotFound)
      .addError(Forbidden)
      .addError(ValidationError)
      .annotate(OpenApi.Summary, "Edit title, description, priority or assignee (emits ticket.updated when something changed)")
  )
  .add(
    HttpApiEndpoint.post("changeTicketStatus", "/:id/status")
      .setPath(TicketIdPath)
      .setPayload(ChangeStatusRequest)
      .addSuccess(Ticket)
      .addError(NotFound)
      .addError(Forbidden)
      .addError(Conflict)
      .annotate(OpenApi.Summary, "Move a ticket along its status machine (emits ticket.status_changed)")
  )
  .middleware(Authentication)
  .prefix("/v1/tickets")
{}
