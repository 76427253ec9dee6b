/**
 * The events contract for consumers in other teams and languages: an
 * AsyncAPI 3.1 document built from the event Schemas (Domain/Events.ts), the
 * topology (Topology.ts) and the header names (Headers.ts), so it cannot drift
 * from what the API publishes and the worker accepts. Served at
 * `/asyncapi.json`; `npm run docs:events` writes docs/asyncapi.json and
 * docs/EVENTS.md from it, and a test checks both are current and that
 * @asyncapi/parser validates the document.
 */
import { JSONSchema, type Schema } from "effect"
import {
  ACTOR_FIELD,
  type DomainEvent,
  ENVELOPE_VERSION,
  EVENT_NAMES,
  type EventName,
  MessageSent,
  TicketCreated,
  TicketStatusChanged,
  TicketUpdated
} from "../Domain/Events.js"
import { DLQ_HEADERS, LAST_ERROR_HEADER, REPLAYED_AT_HEADER, RETRY_HEADER } from "./Headers.js"
import { DLQ, EXCHANGE, queueFor } from "./Topology.js"

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

const SCHEMAS: { readonly [N in EventName]: Schema.Schema<Extract<DomainEvent, { event: N }>, unknown> } = {
  "ticket.created": TicketCreated as never,
  "ticket.updated": TicketUpdated as never,
  "ticket.status_changed": TicketStatusChanged as never,
  "message.sent": MessageSent as never
}

const SUMMARIES: { readonly [N in EventName]: string } = {
  "ticket.created": "A ticket was opened (by its owner).",
  "ticket.updated": "A ticket's title, description, priority or assignee changed.",
  "ticket.status_changed": "A ticket moved along the status workflow (open → in_progress → resolved → closed).",
  "message.sent": "A message was written on a ticket."
}

const ids = {
  ticket: "0b0c4e3e-6a53-4d3e-9d1c-1f2a3b4c5d6e",
  owner: "5f1b7c2a-3d4e-4f50-8a6b-7c8d9e0f1a2b",
  agent: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
  message: "c3d4e5f6-a7b8-4c9d-8e0f-a1b2c3d4e5f6",
  event: "7d2e9f40-1c3b-4a5d-9e6f-0a1b2c3d4e5f"
}
const at = "2026-12-02T10:00:00.000Z"

/** One example envelope per event type, as the API writes it. */
export const EXAMPLES: { readonly [N in EventName]: Extract<DomainEvent, { event: N }> } = {
  "ticket.created": {
    event: "ticket.created",
    eventId: ids.event,
    occurredAt: at,
    payload: {
      id: ids.ticket,
      title: "Printer on fire",
      description: "Third floor, again",
      status: "open",
      priority: "high",
      ownerId: ids.owner,
      assigneeId: null,
      createdAt: at
    },
    actorId: ids.owner,
    version: ENVELOPE_VERSION
  },
  "ticket.updated": {
    event: "ticket.updated",
    eventId: ids.event,
    occurredAt: at,
    payload: {
      id: ids.ticket,
      ownerId: ids.owner,
      assigneeId: ids.agent,
      changedFields: ["assigneeId", "priority"],
      updatedBy: ids.agent,
      updatedAt: at
    },
    actorId: ids.agent,
    version: ENVELOPE_VERSION
  },
  "ticket.status_changed": {
    event: "ticket.status_changed",
    eventId: ids.event,
    occurredAt: at,
    payload: {
      id: ids.ticket,
      from: "open",
      to: "in_progress",
      changedBy: ids.agent,
      changedAt: at,
      ownerId: ids.owner,
      assigneeId: ids.agent
    },
    actorId: ids.agent,
    version: ENVELOPE_VERSION
  },
  "message.sent": {
    event: "message.sent",
    eventId: ids.event,
    occurredAt: at,
    payload: { id: ids.message, ticketId: ids.ticket, authorId: ids.agent, content: "On it.", sentAt: at },
    actorId: ids.agent,
    version: ENVELOPE_VERSION
  }
}

const jsonSchemaOf = (schema: Schema.Schema.Any): Json => {
  const definitions = {}
  // Consumers must ignore fields they do not know, as the worker does: a later version may add some.
  const root = JSONSchema.fromAST(schema.ast, {
    definitions,
    definitionPath: "#/components/schemas/",
    additionalPropertiesStrategy: "allow"
  })
  return JSON.parse(JSON.stringify(root)) as Json
}

const AMQP = "0.3.0"

const publishedHeaders: Json = {
  type: "object",
  description: "AMQP message headers. The message's `messageId` property is the envelope's `eventId`.",
  properties: {
    traceparent: {
      type: "string",
      description: "W3C trace context of the request that wrote the event (only when tracing is on)."
    }
  },
  additionalProperties: true
}

const deadLetterHeaders: Json = {
  type: "object",
  description: "Headers OpsDesk writes on a dead letter, beside the event's own.",
  properties: {
    [DLQ_HEADERS.reason]: { type: "string", description: "Why the message is here, in one line." },
    [DLQ_HEADERS.kind]: {
      type: "string",
      enum: ["poison", "failed", "invalid", "conflict", "crash-loop"],
      description: "poison: never decoded; failed: retries spent; invalid: names a missing entity or came " +
        "through another event's queue; conflict: its eventId was processed with another payload; crash-loop: " +
        "took its batch down too many times."
    },
    [DLQ_HEADERS.attempts]: { type: "integer", description: "Deliveries it had." },
    [DLQ_HEADERS.routingKey]: { type: "string", description: "Its routing key before the DLQ." },
    [DLQ_HEADERS.queue]: { type: "string", description: "The queue it failed on." },
    [DLQ_HEADERS.failedAt]: { type: "string", format: "date-time" },
    [DLQ_HEADERS.fingerprint]: { type: "string", description: "conflict only: sha256 of its name and payload." },
    [DLQ_HEADERS.claimedFingerprint]: {
      type: "string",
      description: "conflict only: the fingerprint its eventId was processed with."
    },
    [RETRY_HEADER]: { type: "integer", description: "Retries so far (on retried copies)." },
    [LAST_ERROR_HEADER]: { type: "string", description: "The error of the last failed attempt." },
    [REPLAYED_AT_HEADER]: { type: "string", format: "date-time", description: "On a copy replayed from the DLQ." }
  },
  additionalProperties: true
}

const describeVersions =
  `Every envelope carries \`version\` (now ${ENVELOPE_VERSION}). Version 1 (the seed's) had no ` +
  "`version` and no `actorId`; OpsDesk's worker upcasts it (actorId from the payload field that names the actor: " +
  Object.entries(ACTOR_FIELD).map(([event, field]) => `${event} → ${field}`).join(", ") +
  "). A consumer should do the same, ignore fields it does not know, and dead-letter a version newer than it knows."

/** The AsyncAPI 3.1 document of OpsDesk's events. */
export const asyncApiDocument = (): Json => {
  const messages: Record<string, Json> = {}
  const channels: Record<string, Json> = {}
  const operations: Record<string, Json> = {}
  for (const name of EVENT_NAMES) {
    messages[name] = {
      name,
      title: name,
      summary: SUMMARIES[name],
      contentType: "application/json",
      headers: publishedHeaders,
      payload: jsonSchemaOf(SCHEMAS[name]),
      correlationId: { description: "The event id, also the AMQP messageId.", location: "$message.payload#/eventId" },
      bindings: { amqp: { messageType: name, bindingVersion: AMQP } },
      examples: [{ name: `${name} example`, payload: EXAMPLES[name] as unknown as Json }]
    }
    channels[name] = {
      address: name,
      title: `${name} on ${EXCHANGE}`,
      description: `Published to the topic exchange \`${EXCHANGE}\` with routing key \`${name}\`; OpsDesk's worker ` +
        `consumes it from \`${queueFor(name)}\`. Bind your own queue to the exchange with this key.`,
      messages: { [name]: { $ref: `#/components/messages/${name}` } },
      bindings: {
        amqp: {
          is: "routingKey",
          exchange: { name: EXCHANGE, type: "topic", durable: true, autoDelete: false, vhost: "/" },
          bindingVersion: AMQP
        }
      }
    }
    operations[`publish.${name}`] = {
      action: "send",
      title: `The API publishes ${name}`,
      summary: "From the transactional outbox, after the change commits: persistent, mandatory, publisher-confirmed. " +
        "At least once: deduplicate on eventId.",
      channel: { $ref: `#/channels/${name}` },
      messages: [{ $ref: `#/channels/${name}/messages/${name}` }],
      bindings: { amqp: { deliveryMode: 2, mandatory: true, bindingVersion: AMQP } }
    }
    operations[`consume.${name}`] = {
      action: "receive",
      title: `The worker consumes ${name}`,
      summary: `From ${queueFor(name)}, acknowledged after its effects commit; failures retried, then dead-lettered.`,
      channel: { $ref: `#/channels/${name}` },
      messages: [{ $ref: `#/channels/${name}/messages/${name}` }],
      bindings: { amqp: { ack: true, bindingVersion: AMQP } }
    }
  }
  for (const name of EVENT_NAMES) {
    messages[`dead.${name}`] = {
      name: `dead.${name}`,
      title: `${name} (dead letter)`,
      summary: `A ${name} the worker could not process, with the reason in its headers.`,
      contentType: "application/json",
      headers: deadLetterHeaders,
      payload: { type: "object", description: "The message body as it arrived (it may not be a valid event)." }
    }
  }
  channels[DLQ] = {
    address: DLQ,
    title: "The dead-letter queue",
    description: "Messages the worker gave up on, each with the reason. Listed, replayed and purged with " +
      "`opsdesk dlq` or the /ops dashboard.",
    messages: Object.fromEntries(
      EVENT_NAMES.map((name) => [`dead.${name}`, { $ref: `#/components/messages/dead.${name}` }])
    ),
    bindings: {
      amqp: {
        is: "queue",
        queue: { name: DLQ, durable: true, exclusive: false, autoDelete: false, vhost: "/" },
        bindingVersion: AMQP
      }
    }
  }
  operations["deadLetter"] = {
    action: "send",
    title: "The worker dead-letters a message",
    channel: { $ref: `#/channels/${DLQ}` },
    messages: EVENT_NAMES.map((name) => ({ $ref: `#/channels/${DLQ}/messages/dead.${name}` }))
  }
  return {
    asyncapi: "3.1.0",
    id: "urn:opsdesk:events",
    info: {
      title: "OpsDesk events",
      version: String(ENVELOPE_VERSION),
      description: "Domain events of OpsDesk, the event-driven helpdesk: what the API publishes to RabbitMQ and " +
        `the worker consumes. ${describeVersions}`,
      license: { name: "MIT" }
    },
    defaultContentType: "application/json",
    servers: {
      rabbitmq: {
        host: "localhost:5672",
        protocol: "amqp",
        protocolVersion: "0.9.1",
        description: "The broker named by AMQP_URL (one node or a comma-separated list)."
      }
    },
    channels,
    operations,
    components: { messages }
  }
}
