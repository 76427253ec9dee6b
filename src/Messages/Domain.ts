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
}).annotations({
  identifier: "Message",
  examples: [{
    id: "c3d4e5f6-a7b8-4c9d-8e0f-a1b2c3d4e5f6",
    ticketId: "0b0c4e3e-6a53-4d3e-9d1c-1f2a3b4c5d6e",
    authorId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    content: "On it, @alice",
    createdAt: "2026-12-02T10:00:00.000Z"
  }]
})
export type Message = typeof Message.Type

export const MessagePage = Schema.Struct({
  items: Schema.Array(Message),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "MessagePage" })
export type MessagePage = typeof MessagePage.Type

export const SendMessageRequest = Schema.Struct({ ticketId: Schema.UUID, content: Content })
  .annotations({
    identifier: "SendMessageRequest",
    examples: [{ ticketId: "0b0c4e3e-6a53-4d3e-9d1c-1f2a3b4c5d6e", content: "On it, @alice" }]
  })
export type SendMessageRequest = typeof SendMessageRequest.Type

export const ListMessagesParams = Schema.Struct({
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListMessagesParams = typeof ListMessagesParams.Type
