import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Forbidden, ValidationError } from "../Kit/Errors.js"
import {
  ChangeStatusRequest,
  CreateTicketRequest,
  ListTicketsParams,
  Ticket,
  TicketIdPath,
  TicketPage,
  UpdateTicketRequest
} from "./Domain.js"
import { InvalidAssignee, InvalidTransition, TicketNotFound } from "./Errors.js"

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
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Tickets visible to the caller, newest first, keyset-paginated")
  )
  .add(
    HttpApiEndpoint.get("getTicket", "/:id")
      .setPath(TicketIdPath)
      .addSuccess(Ticket)
      .addError(TicketNotFound, { status: 404 })
  )
  .add(
    HttpApiEndpoint.patch("updateTicket", "/:id")
      .setPath(TicketIdPath)
      .setPayload(UpdateTicketRequest)
      .addSuccess(Ticket)
      .addError(TicketNotFound, { status: 404 })
      .addError(Forbidden, { status: 403 })
      .addError(InvalidAssignee, { status: 400 })
      .annotate(
        OpenApi.Summary,
        "Edit title, description, priority or assignee (emits ticket.updated when something changed)"
      )
  )
  .add(
    HttpApiEndpoint.post("changeTicketStatus", "/:id/status")
      .setPath(TicketIdPath)
      .setPayload(ChangeStatusRequest)
      .addSuccess(Ticket)
      .addError(TicketNotFound, { status: 404 })
      .addError(Forbidden, { status: 403 })
      .addError(InvalidTransition, { status: 409 })
      .annotate(OpenApi.Summary, "Move a ticket along its status machine (emits ticket.status_changed)")
  )
  .middleware(Authentication)
  .prefix("/v1/tickets")
{}
