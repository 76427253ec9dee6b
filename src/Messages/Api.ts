import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { ValidationError } from "../Kit/Errors.js"
import { TicketIdPath } from "../Tickets/Domain.js"
import { TicketNotFound } from "../Tickets/Errors.js"
import { ListMessagesParams, Message, MessagePage, SendMessageRequest } from "./Domain.js"

export class MessagesApi extends HttpApiGroup.make("messages")
  .add(
    HttpApiEndpoint.post("sendMessage", "/v1/messages")
      .setPayload(SendMessageRequest)
      .addSuccess(Message, { status: 201 })
      .addError(TicketNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Post a message on a ticket the caller can see (emits message.sent)")
  )
  .add(
    HttpApiEndpoint.get("listMessages", "/v1/tickets/:id/messages")
      .setPath(TicketIdPath)
      .setUrlParams(ListMessagesParams)
      .addSuccess(MessagePage)
      .addError(TicketNotFound, { status: 404 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "A ticket's messages, oldest first, keyset-paginated")
  )
  .middleware(Authentication)
{}
