/**
 * What each event does, as a pure plan: the entity that must exist for it to
 * be acted on, the notifications to write (in the same transaction as the
 * idempotency claim, and only if that entity exists), whether cached ticket
 * listings must go, and the seed's log lines to print once the effects
 * committed.
 */
import { type DomainEvent, eventFingerprint } from "../Domain/Events.js"

export interface NotificationRow {
  readonly eventId: string
  readonly eventType: string
  readonly recipientId: string
  readonly channel: "email" | "in_app"
  readonly body: string
}

/**
 * What an event names and the worker checks before acting on it, in the
 * statement that claims it: a ticket event's ticket, with the owner the event
 * gives it (owners never change); a message's row, on its ticket, by its
 * author. Anyone who can publish to the queues could make up the rest.
 */
export type Requirement =
  | { readonly _tag: "Ticket"; readonly ticketId: string; readonly ownerId: string }
  | { readonly _tag: "Message"; readonly messageId: string; readonly ticketId: string; readonly authorId: string }

export const describeRequirement = (r: Requirement): string =>
  r._tag === "Ticket"
    ? `ticket ${r.ticketId} owned by ${r.ownerId} does not exist`
    : `message ${r.messageId} by ${r.authorId} on ticket ${r.ticketId} does not exist`

export interface Plan {
  readonly event: DomainEvent
  /** Of the event's name and payload (Domain/Events.ts): stored with its claim. */
  readonly fingerprint: string
  readonly requires: Requirement
  readonly notifications: ReadonlyArray<NotificationRow>
  readonly invalidatesListings: boolean
  readonly lines: ReadonlyArray<string>
}

/** Watchers per ticket id: owner, assignee and everyone who wrote on it. */
export type Watchers = ReadonlyMap<string, ReadonlyArray<string>>

const unique = (
  ids: ReadonlyArray<string | null>,
  except?: string
) => [...new Set(ids.filter((id): id is string => id !== null && id !== except))]

/**
 * PostgreSQL text cannot hold NUL: an event from another publisher may carry
 * one (the API refuses them), and the notification would then fail its commit
 * on every attempt, into the DLQ. It is replaced, as an unpaired surrogate is.
 */
const storable = (text: string) => (text.includes("\u0000") ? text.replace(/\u0000/g, "\uFFFD") : text)

export const plan = (event: DomainEvent, watchers: Watchers): Plan => {
  const note = (recipientId: string, channel: NotificationRow["channel"], body: string): NotificationRow => ({
    eventId: event.eventId,
    eventType: event.event,
    recipientId,
    channel,
    body: storable(body)
  })
  const fingerprint = eventFingerprint(event)
  switch (event.event) {
    case "ticket.created": {
      const p = event.payload
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        notifications: [note(p.ownerId, "email", `Your ticket "${p.title}" was created (${p.id})`)],
        invalidatesListings: true,
        lines: [`🎫 Ticket created: ${p.id}`, `   📧 [FAKE] Email notification sent to ticket owner ${p.ownerId}`]
      }
    }
    case "ticket.updated": {
      const p = event.payload
      const recipients = unique([p.ownerId, p.assigneeId], p.updatedBy)
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        notifications: recipients.map((r) =>
          note(r, "email", `Ticket ${p.id} was updated: ${p.changedFields.join(", ")}`)
        ),
        invalidatesListings: true,
        lines: [
          `✏️  Ticket updated: ${p.id} (${p.changedFields.join(", ")})`,
          `   📧 [FAKE] Update notification sent to ${recipients.length} recipient(s)`
        ]
      }
    }
    case "ticket.status_changed": {
      const p = event.payload
      const recipients = unique([p.ownerId, p.assigneeId], p.changedBy)
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        notifications: recipients.map((r) => note(r, "email", `Ticket ${p.id} moved from ${p.from} to ${p.to}`)),
        invalidatesListings: true,
        lines: [
          `🔀 Ticket ${p.id} status changed: ${p.from} → ${p.to}`,
          `   📧 [FAKE] Status notification sent to ${recipients.length} recipient(s)`
        ]
      }
    }
    case "message.sent": {
      const p = event.payload
      const recipients = unique(watchers.get(p.ticketId) ?? [], p.authorId)
      return {
        event,
        fingerprint,
        requires: { _tag: "Message", messageId: p.id, ticketId: p.ticketId, authorId: p.authorId },
        notifications: recipients.map((r) => note(r, "in_app", `New message on ticket ${p.ticketId}`)),
        invalidatesListings: false,
        lines: [
          `💬 Message sent in ticket ${p.ticketId} by ${p.authorId}`,
          `   📧 [FAKE] Message notification sent to ticket watchers`
        ]
      }
    }
  }
}
