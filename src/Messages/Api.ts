import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { ValidationError } from "../Kit/Errors.js"
import { TicketIdPath } from "../Tickets/Domain.js"
import { TicketNotFound } from "../Tickets/Errors.js"
import { ListMessagesParams, Message, MessagePage, SendMessageRequest } from "./Domain.js"

export class MessagesApi extends HttpApiGroup.make("messages")
  .annotate(OpenApi.Description, "Messages on tickets: writing one emits message.sent.")
  .add(
    HttpApiEndpoint.post("sendMessage", "/v1/messages")
      .annotate(
        OpenApi.Description,
        "The message, its audit row and its `message.sent` event commit together. `@username` mentions notify that user when they may see the ticket (docs/API.md: who is told what)."
      )
      .setPayload(SendMessageRequest)
      .addSuccess(Message, { status: 201 })
      .addError(TicketNotFound, { status: 404 })
      .annotate(OpenApi.Summary, "Post a message on a ticket the caller can see (emits message.sent)")
  )
  .add(
    HttpApiEndpoint.get("listMessages", "/v1/tickets/:id/messages")
      .annotate(
        OpenApi.Description,
        "Messages of a ticket the caller can see, oldest first. `limit` 1-100 (default 20); `cursor` from the previous page."
      )
      .setPath(TicketIdPath)
      .setUrlParams(ListMessagesParams)
      .addSuccess(MessagePage)
      .addError(TicketNotFound, { status: 404 })
      .addError(ValidationError, { status: 400 })
      .annotate(OpenApi.Summary, "A ticket's messages, oldest first, keyset-paginated")
  )
  .middleware(Authentication)
{}
