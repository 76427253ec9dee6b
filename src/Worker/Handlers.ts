/**
 * What each event does, as a pure plan: the entity that must exist for it to
 * be acted on, the notifications to write (in the same transaction as the
 * idempotency claim, and only if that entity exists), whether cached ticket
 * listings must go, and the seed's log lines to print once the effects
 * committed.
 */
import { type DomainEvent, eventFingerprint } from "../Domain/Events.js"
import { audience, type NotificationChannel, type Reason, type Watchers } from "../Notifications/Recipients.js"
import { type EmailContent, render, type Rendered } from "../Notifications/Templates.js"

export type { Watchers }

/**
 * A notification the plan asks for. The claim statement writes it only if the
 * database half of the recipients policy (src/Notifications/Recipients.ts)
 * lets it through, and adds an email delivery for an email row whose user has
 * an address.
 */
export interface NotificationRow {
  readonly eventId: string
  readonly eventType: string
  readonly recipientId: string
  readonly channel: NotificationChannel
  readonly reason: Reason
  readonly body: string
  /** The email to send: on email rows only. */
  readonly email: EmailContent | null
}

/** A `@username` in a message: resolved to a user in the claim statement, told on one channel. */
export interface MentionRow {
  readonly eventId: string
  readonly eventType: string
  readonly username: string
  readonly channel: NotificationChannel
  readonly body: string
  readonly email: EmailContent | null
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
  /** The author of the change (never told, receipts aside: Recipients.ts). */
  readonly actorId: string
  readonly notifications: ReadonlyArray<NotificationRow>
  readonly mentions: ReadonlyArray<MentionRow>
  readonly invalidatesListings: boolean
  readonly lines: ReadonlyArray<string>
}

/**
 * PostgreSQL text cannot hold NUL: an event from another publisher may carry
 * one (the API refuses them), and the notification would then fail its commit
 * on every attempt, into the DLQ. It is replaced, as an unpaired surrogate is.
 */
const storable = (text: string) => (text.includes("\u0000") ? text.replace(/\u0000/g, "\uFFFD") : text)

const storableEmail = (email: EmailContent): EmailContent => ({
  subject: storable(email.subject),
  text: storable(email.text),
  html: storable(email.html)
})

/** The notifications and mentions of an event, from the recipients policy and the templates. */
const notify = (event: DomainEvent, watchers: Watchers) => {
  const who = audience(event, watchers)
  // Rendered once per reason, and only for a reason someone is told for (most events have no receipt).
  const rendered: Partial<Record<Reason, Rendered>> = {}
  const renderedFor = (reason: Reason): Rendered => {
    const cached = rendered[reason]
    if (cached !== undefined) return cached
    const r = render(event, reason)
    return (rendered[reason] = { body: storable(r.body), email: storableEmail(r.email) })
  }
  const content = (reason: Reason, channel: NotificationChannel) => {
    const r = renderedFor(reason)
    return { body: r.body, email: channel === "email" ? r.email : null }
  }
  const notifications = who.direct.flatMap((a) =>
    a.channels.map((channel): NotificationRow => ({
      eventId: event.eventId,
      eventType: event.event,
      recipientId: a.recipientId,
      channel,
      reason: a.reason,
      ...content(a.reason, channel)
    }))
  )
  const mentions = who.mentions.flatMap((username) =>
    (["email", "in_app"] as const).map((channel): MentionRow => ({
      eventId: event.eventId,
      eventType: event.event,
      username,
      channel,
      ...content("notice", channel)
    }))
  )
  return { actorId: who.actorId, notifications, mentions }
}

/** How many people a plan may tell (`@mentions` resolve later, so they count as candidates). */
const told = (n: ReturnType<typeof notify>) =>
  new Set(n.notifications.filter((r) => r.reason === "notice").map((r) => r.recipientId)).size

export const plan = (event: DomainEvent, watchers: Watchers): Plan => {
  const fingerprint = eventFingerprint(event)
  const notes = notify(event, watchers)
  switch (event.event) {
    case "ticket.created": {
      const p = event.payload
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        ...notes,
        invalidatesListings: true,
        lines: [`🎫 Ticket created: ${p.id}`, `   📧 Email notification queued for ticket owner ${p.ownerId}`]
      }
    }
    case "ticket.updated": {
      const p = event.payload
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        ...notes,
        invalidatesListings: true,
        lines: [
          `✏️  Ticket updated: ${p.id} (${p.changedFields.join(", ")})`,
          `   📧 Update notification queued for ${told(notes)} recipient(s)`
        ]
      }
    }
    case "ticket.status_changed": {
      const p = event.payload
      return {
        event,
        fingerprint,
        requires: { _tag: "Ticket", ticketId: p.id, ownerId: p.ownerId },
        ...notes,
        invalidatesListings: true,
        lines: [
          `🔀 Ticket ${p.id} status changed: ${p.from} → ${p.to}`,
          `   📧 Status notification queued for ${told(notes)} recipient(s)`
        ]
      }
    }
    case "message.sent": {
      const p = event.payload
      return {
        event,
        fingerprint,
        requires: { _tag: "Message", messageId: p.id, ticketId: p.ticketId, authorId: p.authorId },
        ...notes,
        invalidatesListings: false,
        lines: [
          `💬 Message sent in ticket ${p.ticketId} by ${p.authorId}`,
          `   📧 Message notification queued for ticket watchers`
        ]
      }
    }
  }
}
