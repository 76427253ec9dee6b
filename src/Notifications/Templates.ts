/**
 * What a notification says, per event type: the in-app line (`body`, as the
 * seed wrote it) and the email (subject, plain text, HTML). Rendered at plan
 * time from the event alone, so the email a delivery sends is fixed with its
 * intent and a retry sends the same bytes. Everything that came from a user is
 * escaped in the HTML and stripped of line breaks in the subject (a header).
 */
import type { DomainEvent } from "../Domain/Events.js"
import type { Reason } from "./Recipients.js"

export interface EmailContent {
  readonly subject: string
  readonly text: string
  readonly html: string
}

export interface Rendered {
  /** The in-app notification's text, and the notification row's body. */
  readonly body: string
  readonly email: EmailContent
}

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }

export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!)

/** A header value: no line breaks (no header injection), no control characters, bounded. */
export const headerSafe = (s: string, max = 150): string => {
  const flat = s.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, " ").replace(/\s+/g, " ").trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** Long user text is cut in the email (the ticket has all of it). */
const excerpt = (s: string, max = 2000) => (s.length > max ? `${s.slice(0, max - 1)}…` : s)

const STATUS_LABEL: Record<string, string> = {
  open: "Open",
  in_progress: "In progress",
  resolved: "Resolved",
  closed: "Closed"
}

interface Parts {
  readonly body: string
  readonly subject: string
  /** Paragraphs; each is plain text, escaped for the HTML part. */
  readonly lines: ReadonlyArray<string>
  /** A quoted block of user text (description, message), if any. */
  readonly quote?: string
}

const assemble = (parts: Parts): Rendered => {
  const footer = "You receive this because of your notification preferences in OpsDesk."
  const text = [...parts.lines, ...(parts.quote === undefined ? [] : [parts.quote.replace(/^/gm, "> ")]), "--", footer]
    .join("\n\n")
  const html = [
    "<!doctype html><html><body style=\"font-family:sans-serif\">",
    ...parts.lines.map((l) => `<p>${escapeHtml(l)}</p>`),
    ...(parts.quote === undefined ? [] : [
      `<blockquote style="border-left:3px solid #ccc;margin:0;padding-left:1em;white-space:pre-wrap">${
        escapeHtml(parts.quote)
      }</blockquote>`
    ]),
    `<hr><p style="color:#666;font-size:small">${escapeHtml(footer)}</p>`,
    "</body></html>"
  ].join("\n")
  return { body: parts.body, email: { subject: headerSafe(parts.subject), text, html } }
}

export const render = (event: DomainEvent, reason: Reason): Rendered => {
  switch (event.event) {
    case "ticket.created": {
      const p = event.payload
      return reason === "receipt"
        ? assemble({
          body: `Your ticket "${p.title}" was created (${p.id})`,
          subject: `[OpsDesk] Received: ${p.title}`,
          lines: [`Your ticket "${p.title}" was created (${p.id}), with priority ${p.priority}.`],
          quote: excerpt(p.description)
        })
        : assemble({
          body: `New ticket "${p.title}" assigned to you (${p.id})`,
          subject: `[OpsDesk] Assigned to you: ${p.title}`,
          lines: [`A new ticket "${p.title}" (${p.id}), priority ${p.priority}, is assigned to you.`],
          quote: excerpt(p.description)
        })
    }
    case "ticket.updated": {
      const p = event.payload
      const fields = p.changedFields.join(", ")
      return assemble({
        body: `Ticket ${p.id} was updated: ${fields}`,
        subject: `[OpsDesk] Ticket ${p.id} updated`,
        lines: [`Ticket ${p.id} was updated (${fields}).`]
      })
    }
    case "ticket.status_changed": {
      const p = event.payload
      const [from, to] = [STATUS_LABEL[p.from] ?? p.from, STATUS_LABEL[p.to] ?? p.to]
      return assemble({
        body: `Ticket ${p.id} moved from ${p.from} to ${p.to}`,
        subject: `[OpsDesk] Ticket ${p.id}: ${to}`,
        lines: [`Ticket ${p.id} moved from ${from} to ${to}.`]
      })
    }
    case "message.sent": {
      const p = event.payload
      return assemble({
        body: `New message on ticket ${p.ticketId}`,
        subject: `[OpsDesk] New message on ticket ${p.ticketId}`,
        lines: [`There is a new message on ticket ${p.ticketId}:`],
        quote: excerpt(p.content)
      })
    }
  }
}
