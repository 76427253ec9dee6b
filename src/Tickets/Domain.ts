/** Tickets as the API shows them, the requests about them, and the status machine. */
import { Schema } from "effect"
import { TicketPriority, TicketStatus } from "../Domain/Events.js"
import { Cursor, Limit } from "../Kit/Pagination.js"
import { StorableText, Timestamp } from "../Kit/Schemas.js"

export const Title = StorableText.pipe(
  Schema.maxLength(200),
  Schema.filter((s) => s.trim().length > 0, { message: () => "title must not be blank" })
)
export const Description = StorableText.pipe(Schema.maxLength(10_000))

/**
 * Accepted on input: the four priorities, plus `normal` as an alias of
 * `medium` (some clients, e.g. the benchmark driver, send it). Always
 * answered as `medium`.
 */
export const PriorityInput = Schema.Union(
  TicketPriority,
  Schema.transform(Schema.Literal("normal"), Schema.Literal("medium"), {
    strict: true,
    decode: () => "medium" as const,
    encode: () => "normal" as const
  })
)

export const Ticket = Schema.Struct({
  id: Schema.UUID,
  title: Schema.String,
  description: Schema.String,
  status: TicketStatus,
  priority: TicketPriority,
  ownerId: Schema.UUID,
  assigneeId: Schema.NullOr(Schema.UUID),
  createdAt: Timestamp,
  updatedAt: Timestamp
}).annotations({
  identifier: "Ticket",
  examples: [{
    id: "0b0c4e3e-6a53-4d3e-9d1c-1f2a3b4c5d6e",
    title: "Printer on fire",
    description: "Third floor, again",
    status: "in_progress",
    priority: "high",
    ownerId: "5f1b7c2a-3d4e-4f50-8a6b-7c8d9e0f1a2b",
    assigneeId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    createdAt: "2026-12-02T10:00:00.000Z",
    updatedAt: "2026-12-02T10:00:00.000Z"
  }]
})
export type Ticket = typeof Ticket.Type

export const TicketPage = Schema.Struct({
  items: Schema.Array(Ticket),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "TicketPage" })
export type TicketPage = typeof TicketPage.Type

export const CreateTicketRequest = Schema.Struct({
  title: Title,
  description: Description,
  priority: Schema.optional(PriorityInput)
}).annotations({
  identifier: "CreateTicketRequest",
  examples: [{ title: "Printer on fire", description: "Third floor, again", priority: "high" }]
})
export type CreateTicketRequest = typeof CreateTicketRequest.Type

export const UpdateTicketRequest = Schema.Struct({
  title: Schema.optional(Title),
  description: Schema.optional(Description),
  priority: Schema.optional(PriorityInput),
  assigneeId: Schema.optional(Schema.NullOr(Schema.UUID))
}).pipe(
  Schema.filter(
    (p) =>
      p.title !== undefined || p.description !== undefined || p.priority !== undefined || p.assigneeId !== undefined,
    { message: () => "at least one of title, description, priority, assigneeId is required" }
  )
).annotations({
  identifier: "UpdateTicketRequest",
  examples: [{ assigneeId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", priority: "urgent" }]
})
export type UpdateTicketRequest = typeof UpdateTicketRequest.Type

export const ChangeStatusRequest = Schema.Struct({ status: TicketStatus }).annotations({
  identifier: "ChangeStatusRequest",
  examples: [{ status: "resolved" }]
})
export type ChangeStatusRequest = typeof ChangeStatusRequest.Type

export const ListTicketsParams = Schema.Struct({
  status: Schema.optional(TicketStatus),
  assigneeId: Schema.optional(Schema.UUID),
  priority: Schema.optional(TicketPriority),
  limit: Schema.optional(Limit),
  cursor: Schema.optional(Cursor)
})
export type ListTicketsParams = typeof ListTicketsParams.Type

export const TicketIdPath = Schema.Struct({ id: Schema.UUID })

/** open → in_progress → resolved → closed; resolved or closed → open reopens. */
export const TRANSITIONS: { readonly [From in TicketStatus]: ReadonlyArray<TicketStatus> } = {
  open: ["in_progress"],
  in_progress: ["resolved"],
  resolved: ["closed", "open"],
  closed: ["open"]
}

export const canTransition = (from: TicketStatus, to: TicketStatus): boolean => TRANSITIONS[from].includes(to)

/** The statuses a customer may move their own ticket to: reopen it, or close it. */
export const CUSTOMER_TARGETS: ReadonlyArray<TicketStatus> = ["open", "closed"]
