/**
 * Messages on tickets. Posting writes the message, its audit row and the
 * `message.sent` outbox event (exactly the seed's payload) in one transaction.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import { Unauthorized } from "../Auth/Errors.js"
import { makeEvent, type MessageSent } from "../Domain/Events.js"
import { DEFAULT_LIMIT, positionOf, toPage } from "../Kit/Pagination.js"
import { tracedFn } from "../Observability/Span.js"
import { appendEvent, RelayWake } from "../Outbox/Outbox.js"
import { FOREIGN_KEY_VIOLATION, sqlConstraint, sqlState } from "../Store/SqlState.js"
import { visibleOrNotFound } from "../Tickets/Policy.js"
import { TicketsRepo } from "../Tickets/Repo.js"
import type { ListMessagesParams, MessagePage, SendMessageRequest } from "./Domain.js"
import { MessagesRepo, toMessage } from "./Repo.js"

export class Messages extends Effect.Service<Messages>()("OpsDesk/Messages", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tickets = yield* TicketsRepo
    const repo = yield* MessagesRepo
    const relay = yield* RelayWake

    const visibleTicket = (actor: Actor, id: string) =>
      Effect.flatMap(tickets.findById(id), visibleOrNotFound(actor, id))

    const send = tracedFn("Messages.send")(function*(actor: Actor, input: SendMessageRequest) {
      return yield* sql.withTransaction(Effect.gen(function*() {
        const ticket = yield* visibleTicket(actor, input.ticketId)
        const message = yield* repo.insert({ ticketId: ticket.id, authorId: actor.id, content: input.content })
        yield* appendEvent(makeEvent<MessageSent>("message.sent", {
          id: message.id,
          ticketId: message.ticketId,
          authorId: message.authorId,
          content: message.content,
          sentAt: message.createdAt
        }))
        return message
      })).pipe(
        Effect.catchTag("SqlError", (e) =>
          // The author vanished after the token was issued.
          sqlState(e) === FOREIGN_KEY_VIOLATION && sqlConstraint(e) === "messages_author_id_fkey"
            ? Effect.fail(new Unauthorized({ message: "the user of this token no longer exists" }))
            : Effect.die(e)),
        // Once committed: the relay's claim sees the event.
        Effect.tap(() => relay.wake)
      )
    })

    const list = tracedFn("Messages.list")(function*(actor: Actor, ticketId: string, params: ListMessagesParams) {
      const after = yield* positionOf(params.cursor)
      yield* visibleTicket(actor, ticketId)
      const limit = params.limit ?? DEFAULT_LIMIT
      const page: MessagePage = toPage(yield* repo.list(ticketId, after, limit), limit, toMessage)
      return page
    })

    return { send, list } as const
  }),
  dependencies: [TicketsRepo.Default, MessagesRepo.Default, RelayWake.Default]
}) {}
