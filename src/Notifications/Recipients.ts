/**
 * Who is told what: the one place that decides it (docs/API.md, "Who is told
 * what"). Two halves, both here: `audience` is the pure part, from the event
 * alone (and the ticket's watchers); `ELIGIBLE_SQL` is the part that needs the
 * database at claim time (mentions resolved to users, deactivated users,
 * customers on another customer's ticket, channel preferences), run inside the
 * worker's claim statement (src/Worker/EventStore.ts) so the rows it writes are
 * decided with the claim.
 *
 * Rules:
 * - ticket.created: the owner gets a receipt by email (the one message that
 *   tells the author about their own change: it confirms the request reached
 *   the desk); an assignee set at creation is told on every channel.
 * - ticket.updated, ticket.status_changed: the owner and the assignee.
 * - message.sent: the watchers (owner, assignee, everyone who wrote on the
 *   ticket) and the users mentioned as `@username`.
 * - Never the author of the change (the event's actor), receipts aside.
 * - Never a customer for a ticket they do not own (a mention or an old
 *   message does not make another customer's ticket theirs to hear about).
 * - Never a deactivated user.
 * - Each channel only if the user's preferences leave it on (no row: on).
 * - One notification per user, event and channel, however many reasons.
 */
import type { DomainEvent } from "../Domain/Events.js"

export type NotificationChannel = "email" | "in_app"
export const NOTIFICATION_CHANNELS: ReadonlyArray<NotificationChannel> = ["email", "in_app"]

/** Why someone is told: a receipt goes to the actor themself, a notice to someone else. */
export type Reason = "receipt" | "notice"

export interface Addressee {
  readonly recipientId: string
  readonly channels: ReadonlyArray<NotificationChannel>
  readonly reason: Reason
}

export interface Audience {
  /** The author of the change: never told, receipts aside (also excluded in SQL, for mentions). */
  readonly actorId: string
  readonly direct: ReadonlyArray<Addressee>
  /** `@username`s to resolve at claim time; each told on every channel, as a notice. */
  readonly mentions: ReadonlyArray<string>
}

/** Watchers per ticket id: owner, assignee and everyone who wrote on it. */
export type Watchers = ReadonlyMap<string, ReadonlyArray<string>>

/** A message may mention at most this many names: past it, the rest are ignored (bounded fan-out). */
export const MAX_MENTIONS = 50

const USERNAME_CHARS = "A-Za-z0-9_.\\-"
// Not preceded by a name character or `@`, so `bob@example.com` is an address, not a mention.
const MENTION = new RegExp(`(?<![${USERNAME_CHARS}@])@([${USERNAME_CHARS}]{1,64})`, "g")

/**
 * The names `@mentioned` in a text, in order, without repeats. A name that
 * ends in `.` or `-` also yields the name without them (`@bob.` at the end of
 * a sentence), since usernames may end in either: the claim keeps whichever
 * exists.
 */
export const mentionsIn = (text: string): ReadonlyArray<string> => {
  const names = new Set<string>()
  for (const match of text.matchAll(MENTION)) {
    const name = match[1]!
    names.add(name)
    const trimmed = name.replace(/[.-]+$/, "")
    if (trimmed !== "" && trimmed !== name) names.add(trimmed)
    if (names.size >= MAX_MENTIONS) break
  }
  return [...names].slice(0, MAX_MENTIONS)
}

const everyChannel = (recipientId: string): Addressee => ({
  recipientId,
  channels: NOTIFICATION_CHANNELS,
  reason: "notice"
})

const othersThan = (actorId: string, ids: ReadonlyArray<string | null>): ReadonlyArray<Addressee> =>
  [...new Set(ids.filter((id): id is string => id !== null && id !== actorId))].map(everyChannel)

export const audience = (event: DomainEvent, watchers: Watchers): Audience => {
  switch (event.event) {
    case "ticket.created": {
      const p = event.payload
      // Tickets are created by their owner (src/Tickets/Tickets.ts): the owner is the actor.
      return {
        actorId: p.ownerId,
        direct: [
          { recipientId: p.ownerId, channels: ["email"], reason: "receipt" },
          ...othersThan(p.ownerId, [
            p.assigneeId
          ])
        ],
        mentions: []
      }
    }
    case "ticket.updated": {
      const p = event.payload
      return { actorId: p.updatedBy, direct: othersThan(p.updatedBy, [p.ownerId, p.assigneeId]), mentions: [] }
    }
    case "ticket.status_changed": {
      const p = event.payload
      return { actorId: p.changedBy, direct: othersThan(p.changedBy, [p.ownerId, p.assigneeId]), mentions: [] }
    }
    case "message.sent": {
      const p = event.payload
      return {
        actorId: p.authorId,
        direct: othersThan(p.authorId, watchers.get(p.ticketId) ?? []),
        mentions: mentionsIn(p.content)
      }
    }
  }
}

/**
 * The database half, as the body of a CTE. It reads three relations the
 * claim statement defines:
 *   claimed_events(event_id, event_type, ticket_id, ticket_owner, actor_id)   the events claimed now
 *   direct_input(event_id, recipient_id, channel, reason, body, subject, text, html)
 *   mention_input(event_id, username, channel, reason, body, subject, text, html)
 * and yields (event_id, event_type, recipient_id, channel, body, subject, text, html, email): one row per
 * user, event and channel that passes every rule. A notice wins over a receipt for the same user (never both).
 */
export const ELIGIBLE_SQL = `
  SELECT DISTINCT ON (c.event_id, c.recipient_id, c.channel)
    c.event_id, e.event_type, c.recipient_id, c.channel, c.body, c.subject, c.text, c.html, u.email
  FROM (
    SELECT d.event_id, d.recipient_id, d.channel, d.reason, d.body, d.subject, d.text, d.html FROM direct_input d
    UNION ALL
    SELECT m.event_id, mu.id, m.channel, m.reason, m.body, m.subject, m.text, m.html
    FROM mention_input m CROSS JOIN LATERAL (SELECT id FROM users WHERE username = m.username LIMIT 1) mu
  ) c
  JOIN claimed_events e ON e.event_id = c.event_id
  -- LATERAL … LIMIT 1 (never flattened): one index lookup per row, whatever the statistics say; with a freshly
  -- filled users table's, a plain join was planned as a scan of every user for every notification of the batch.
  CROSS JOIN LATERAL (SELECT id, active, role, email FROM users WHERE id = c.recipient_id LIMIT 1) u
  LEFT JOIN LATERAL (
    SELECT email, in_app FROM user_preferences WHERE user_id = c.recipient_id LIMIT 1
  ) pref ON true
  WHERE u.active
    AND (u.id <> e.actor_id OR c.reason = 'receipt')
    AND (u.role <> 'customer' OR u.id = e.ticket_owner)
    AND CASE c.channel WHEN 'email' THEN coalesce(pref.email, true) ELSE coalesce(pref.in_app, true) END
  ORDER BY c.event_id, c.recipient_id, c.channel, c.reason = 'receipt'`
