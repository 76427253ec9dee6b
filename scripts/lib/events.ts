/**
 * Event bodies for the load scripts (`npm run bench`, scripts/prefetch-measure.ts):
 * valid OpsDesk envelopes of the four event types, with fresh ids (the
 * baseline's own bodies would be poison to OpsDesk's Schemas). The scripts
 * create the tickets, messages and users the ids name, since the worker acts
 * only on events about entities that exist.
 */
export const EVENTS = ["ticket.created", "ticket.updated", "ticket.status_changed", "message.sent"] as const
export type BenchEvent = (typeof EVENTS)[number]

const uuid = () => crypto.randomUUID()

export const makeEvent = (event: BenchEvent) => {
  const t = new Date().toISOString()
  const payload = event === "ticket.created"
    ? {
      id: uuid(),
      title: "t",
      description: "d",
      status: "open",
      priority: "low",
      ownerId: uuid(),
      assigneeId: null,
      createdAt: t
    }
    : event === "ticket.updated"
    ? { id: uuid(), ownerId: uuid(), assigneeId: null, changedFields: ["title"], updatedBy: uuid(), updatedAt: t }
    : event === "ticket.status_changed"
    ? {
      id: uuid(),
      from: "open",
      to: "in_progress",
      changedBy: uuid(),
      changedAt: t,
      ownerId: uuid(),
      assigneeId: null
    }
    : { id: uuid(), ticketId: uuid(), authorId: uuid(), content: "b", sentAt: t }
  return { event, eventId: uuid(), occurredAt: t, payload }
}
