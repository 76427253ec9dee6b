/** Messages on a ticket, as the API shows them, and the requests about them. */
import { Schema } from "effect"
import { Cursor, Limit } from "../Kit/Pagination.js"
import { StorableText, Timestamp } from "../Kit/Schemas.js"

export const Content = StorableText.pipe(
  Schema.maxLength(10_000),
  Schema.filter((s) => s.trim().length > 0, { message: () => "content must not be blank" })
)

export const Message = Schema.Struct({
  id: Schema.UUID,
  ticketId: Schema.UUID,
  authorId: Schema.UUID,
  content: Schema.String,
  createdAt: Timestamp
}).annotations({ identifier: "Message" })
export type Message = typeof Message.Type

export const MessagePage = Schema.Struct({
  items: Schema.Array(Message),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "MessagePage" })
export type MessagePage = typeof MessagePage.Type

export const SendMessageRequest = Schema.Struct({ ticketId: Schema.UUID, content: Content })
  .annotations({ identifier: "SendMessageRequest" })
export type SendMessageRequest = typeof SendMessageRequest.Type

export const ListMessagesParams = Schema.Struct({
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListMessagesParams = typeof ListMessagesParams.Type
