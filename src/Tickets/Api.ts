import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { FrontCached } from "../Kit/Api.js"
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
import { GENERATION_KEY } from "./ListCache.js"

export class TicketsApi extends HttpApiGroup.make("tickets")
  .annotate(
    OpenApi.Description,
    "Tickets and their status workflow (open → in_progress → resolved → closed). Every write emits a domain event."
  )
  .add(
    HttpApiEndpoint.post("createTicket", "/")
      .annotate(
        OpenApi.Description,
        "The ticket, its audit row and its `ticket.created` event (outbox) commit in one statement; the event is published after the commit, at least once."
      )
      .setPayload(CreateTicketRequest)
      .addSuccess(Ticket, { status: 201 })
      .annotate(OpenApi.Summary, "Open a ticket; the caller is its owner (emits ticket.created)")
  )
  .add(
    HttpApiEndpoint.get("listTickets", "/")
      .annotate(
        OpenApi.Description,
        "Customers see their own tickets, agents and admins all. `limit` 1-100 (default 20); pass the page's `nextCursor` as `cursor` for the next page. Listings may be served from a short-lived Redis cache that every ticket event invalidates."
      )
      .setUrlParams(ListTicketsParams)
      .addSuccess(TicketPage)
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "Tickets visible to the caller, newest first, keyset-paginated")
      // The worker bumps the listing cache's generation on every ticket event (Worker/Processor.ts).
      .annotate(FrontCached, GENERATION_KEY)
  )
  .add(
    HttpApiEndpoint.get("getTicket", "/:id")
      .annotate(OpenApi.Description, "404 for a ticket that does not exist and for one the caller may not see alike.")
      .setPath(TicketIdPath)
      .addSuccess(Ticket)
      .addError(TicketNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "One ticket by id")
  )
  .add(
    HttpApiEndpoint.patch("updateTicket", "/:id")
      .annotate(
        OpenApi.Description,
        "Customers may edit the title, description and priority of their own tickets; agents and admins any field, including `assigneeId` (an agent or admin). Only fields whose value changes are written and reported in `changedFields`."
      )
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
      .annotate(
        OpenApi.Description,
        "Allowed moves: open → in_progress → resolved → closed, and resolved or closed → open (reopen). Agents and admins make any allowed move; customers only reopen or close their own tickets (403 otherwise). 409 for a move the machine does not allow."
      )
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
