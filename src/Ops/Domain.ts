/**
 * What the ops dashboard's endpoints answer and fail with, as Schemas (they
 * are in /openapi.json; the statuses are declared by Api.ts).
 */
import { Schema } from "effect"
import { DlqEntry } from "../Dlq/Entry.js"
import { wireTag } from "../Kit/Errors.js"
import { BigintId, Timestamp } from "../Kit/Schemas.js"

/** RabbitMQ or PostgreSQL (whatever an action needs) did not answer. */
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { message: Schema.String },
  { description: "RabbitMQ or PostgreSQL is unreachable or did not answer in time" }
) {}

/** No failed delivery has that id (delivered, pending again, or never there). */
export class DeliveryNotFound extends Schema.TaggedError<DeliveryNotFound>("DeliveryNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {}

/** The DLQ entry is gone (replayed, discarded or purged meanwhile). */
export class DlqEntryNotFound extends Schema.TaggedError<DlqEntryNotFound>("DlqEntryNotFound")(
  "NotFound",
  { message: Schema.String },
  wireTag("NotFound")
) {}

/** The DLQ entry cannot be replayed (a poison message, say), or not without `force` (`tooOld`). */
export class NotReplayable extends Schema.TaggedError<NotReplayable>("NotReplayable")(
  "Conflict",
  {
    message: Schema.String,
    tooOld: Schema.optional(Schema.Boolean).annotations({
      description:
        "true: refused only because it failed longer ago than DLQ_REPLAY_WINDOW (its event may have been processed and its dedupe claim removed since); `force: true` replays it anyway"
    })
  },
  wireTag("Conflict")
) {}

/** Every panel says whether its source answered; when not, `error` says why and the numbers are empty. */
const panel = {
  available: Schema.Boolean,
  error: Schema.NullOr(Schema.String)
}

export const QueueDepth = Schema.Struct({
  queue: Schema.String,
  messages: Schema.Int.annotations({ description: "Ready messages" }),
  consumers: Schema.Int
})

export const QueuesPanel = Schema.Struct({ ...panel, items: Schema.Array(QueueDepth) }).annotations({
  description: "The four event queues and tickets.dlq, read from RabbitMQ"
})

export const OutboxPanel = Schema.Struct({
  ...panel,
  backlog: Schema.Int.annotations({ description: "Outbox events not yet published" }),
  oldestUnpublishedSeconds: Schema.NullOr(Schema.Number).annotations({
    description: "Age of the oldest of them; null when there is none"
  }),
  unroutable: Schema.Int.annotations({
    description:
      "Of the backlog, events the broker returned as unroutable (no queue bound to their routing key): they wait for a route"
  })
})

export const WorkerCounters = Schema.Struct({
  processed: Schema.Number,
  failed: Schema.Number.annotations({ description: "Dead-lettered after their retries" }),
  retried: Schema.Number,
  duplicates: Schema.Number,
  poison: Schema.Number.annotations({ description: "Dead-lettered at once: the body never decoded" }),
  deadLettered: Schema.Number.annotations({ description: "failed + poison" })
})
export type WorkerCounters = typeof WorkerCounters.Type

export const WorkerEventStats = Schema.Struct({
  event: Schema.String,
  ...WorkerCounters.fields,
  avgProcessingMs: Schema.NullOr(Schema.Number),
  avgLagMs: Schema.NullOr(Schema.Number).annotations({ description: "From the event's occurredAt to its processing" })
})
export type WorkerEventStats = typeof WorkerEventStats.Type

export const WorkerPanel = Schema.Struct({
  ...panel,
  url: Schema.String.annotations({ description: "The worker's Prometheus endpoint (WORKER_METRICS_URL)" }),
  scrapedAt: Schema.NullOr(Timestamp),
  events: Schema.Array(WorkerEventStats),
  totals: WorkerCounters
}).annotations({
  description: "Counters since the worker started; rates are computed by the page from successive polls"
})

export const WorkerEntry = Schema.Struct({
  id: Schema.String.annotations({ description: "host:pid:random, as the worker registered itself" }),
  host: Schema.String,
  pid: Schema.Int,
  brokerNode: Schema.NullOr(Schema.String).annotations({
    description:
      "amqp://host:port of the RabbitMQ node its consumer connection was on at its last heartbeat; null while disconnected"
  }),
  startedAt: Timestamp,
  lastSeen: Timestamp.annotations({ description: "Its last heartbeat" }),
  lastSeenSeconds: Schema.Number,
  ...WorkerCounters.fields,
  share: Schema.NullOr(Schema.Number).annotations({
    description: "Its part of the live workers' processed events (0..1); null when none processed any"
  }),
  avgProcessingMs: Schema.NullOr(Schema.Number),
  avgLagMs: Schema.NullOr(Schema.Number)
})
export type WorkerEntry = typeof WorkerEntry.Type

export const WorkersPanel = Schema.Struct({
  ...panel,
  ttlSeconds: Schema.Number.annotations({
    description: "A worker whose heartbeat is older than this is not counted (WORKER_REGISTRY_TTL_MS)"
  }),
  live: Schema.Int.annotations({ description: "Workers counted" }),
  scrapedAt: Schema.NullOr(Timestamp).annotations({ description: "When the registry was read" }),
  items: Schema.Array(WorkerEntry),
  events: Schema.Array(WorkerEventStats).annotations({ description: "Every live worker's counters, summed per event" }),
  totals: WorkerCounters
}).annotations({
  description:
    "Every live worker, from the registry their heartbeats write (each worker's counters since it started, as of its last heartbeat)"
})

export const WebhooksPanel = Schema.Struct({
  ...panel,
  disabled: Schema.Int.annotations({
    description: "Webhook subscriptions OpsDesk disabled (failures in a row, or 410 Gone) and nobody re-enabled"
  }),
  items: Schema.Array(Schema.Struct({
    id: Schema.String,
    url: Schema.String,
    disabledAt: Timestamp,
    disabledReason: Schema.NullOr(Schema.String)
  })).annotations({ description: "The latest of them (at most 10)" })
})

export const DlqPanel = Schema.Struct({
  ...panel,
  depth: Schema.NullOr(Schema.Int),
  limit: Schema.Int,
  entries: Schema.Array(DlqEntry)
})

const DeliveryChannel = Schema.Literal("email", "webhook")
const DeliveryState = Schema.Literal("pending", "delivered", "failed")

export const DeliveryChannelSummary = Schema.Struct({
  channel: DeliveryChannel,
  pending: Schema.Int,
  failed: Schema.Int,
  delivered: Schema.Int,
  oldestPendingSeconds: Schema.NullOr(Schema.Number).annotations({
    description: "How long the oldest pending delivery has waited since it was created; null when none is pending"
  })
})

export const DeliveryItem = Schema.Struct({
  id: Schema.String.annotations({ description: "Numeric, as `opsdesk deliveries list` shows it" }),
  channel: DeliveryChannel,
  state: DeliveryState,
  eventId: Schema.String,
  eventType: Schema.String,
  recipientId: Schema.NullOr(Schema.String),
  subscriptionId: Schema.NullOr(Schema.String),
  attempts: Schema.Int,
  lastError: Schema.NullOr(Schema.String),
  lastStatus: Schema.NullOr(Schema.Int),
  nextAttemptAt: Timestamp,
  createdAt: Timestamp,
  updatedAt: Timestamp
})
export type DeliveryItem = typeof DeliveryItem.Type

export const DeliveriesPanel = Schema.Struct({
  ...panel,
  channels: Schema.Array(DeliveryChannelSummary),
  pending: Schema.Int,
  failed: Schema.Int,
  oldestPendingSeconds: Schema.NullOr(Schema.Number),
  latestFailed: Schema.Array(DeliveryItem).annotations({ description: "The newest failed deliveries (at most 10)" })
}).annotations({ description: "Notification deliveries (email, webhook), from the deliveries table" })

export const BrokerPanel = Schema.Struct({
  publisher: Schema.NullOr(Schema.String).annotations({
    description:
      "amqp://host:port of the node the API's publisher (the outbox relay's) is connected to; null when it is not"
  }),
  connections: Schema.Array(Schema.Struct({
    connection: Schema.String.annotations({
      description: "The connection's name (opsdesk-publisher, opsdesk-dlq, ...)"
    }),
    node: Schema.String.annotations({ description: "amqp://host:port of the RabbitMQ node it is on" })
  }))
}).annotations({
  description: "The RabbitMQ nodes this API process's open connections are on (each worker's node is in workers.items)"
})

export const Overview = Schema.Struct({
  generatedAt: Timestamp,
  queues: QueuesPanel,
  outbox: OutboxPanel,
  worker: WorkerPanel,
  workers: WorkersPanel,
  webhooks: WebhooksPanel,
  deliveries: DeliveriesPanel,
  broker: BrokerPanel,
  dlq: DlqPanel
})
export type Overview = typeof Overview.Type

const Limit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)).annotations({
  jsonSchema: { type: "integer", minimum: 1, maximum: 500, default: 50 }
})

export const OverviewParams = Schema.Struct({
  dlqLimit: Schema.optional(Limit).annotations({ description: "DLQ entries to include (1..500, default 50)" })
})

/** Each page borrows the messages before it (its offset, or up to its anchor) under the DLQ lock: bounded; search and filters reach the rest. */
export const MAX_DLQ_OFFSET = 10_000
const Offset = Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, MAX_DLQ_OFFSET)).annotations({
  jsonSchema: { type: "integer", minimum: 0, maximum: MAX_DLQ_OFFSET, default: 0 }
})

const DlqKind = DlqEntry.fields.kind

export const DlqListParams = Schema.Struct({
  limit: Schema.optional(Limit).annotations({ description: "1..500, default 50" }),
  after: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description:
      "Only entries after the one with this id: the previous page's `next`. The page stays put when entries before it are replayed or discarded; 404 `DlqEntryNotFound` once that entry itself has left the DLQ, or when more than 10,000 matching entries come before it"
  }),
  offset: Schema.optional(Offset).annotations({
    description: "Matching entries to skip (0 by default; after `after`, when given)"
  }),
  event: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description: "Only entries of this event type"
  }),
  kind: Schema.optional(DlqKind).annotations({
    description: "Only entries of this kind (why they were dead-lettered)"
  }),
  eventId: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description: "Only entries of this event id (or AMQP messageId)"
  })
})

export const DlqList = Schema.Struct({
  depth: Schema.Int.annotations({ description: "Every message in the DLQ, matching or not" }),
  offset: Schema.Int.annotations({ description: "Matching entries before this page" }),
  limit: Schema.Int,
  hasMore: Schema.Boolean.annotations({ description: "More matching entries follow this page" }),
  next: Schema.NullOr(Schema.String).annotations({
    description: "`after` for the next page (this page's last entry); null on the last page"
  }),
  entries: Schema.Array(DlqEntry)
})

/** A DLQ entry's id, as listed. */
export const EntryId = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64))

export const DlqMessagePath = Schema.Struct({ id: EntryId })

export const DlqMessage = Schema.Struct({
  entry: DlqEntry,
  properties: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description: "The AMQP properties but headers (messageId, contentType, timestamp, ...)"
  }),
  headers: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description: "The AMQP headers as JSON: binary values as { base64 }, timestamps as ISO-8601"
  }),
  routingKey: Schema.String.annotations({ description: "The routing key it reached the DLQ with" }),
  body: Schema.String.annotations({ description: "The body as UTF-8 text, or base64 when it is not valid UTF-8" }),
  bodyEncoding: Schema.Literal("utf8", "base64"),
  json: Schema.Boolean.annotations({ description: "Whether the body parses as JSON" }),
  size: Schema.Int.annotations({ description: "The body's size in bytes" })
})

export const HistoryPoint = Schema.Struct({
  at: Timestamp,
  processedPerSecond: Schema.NullOr(Schema.Number).annotations({
    description:
      "Events processed per second since the previous sample, every live worker summed; null for the first sample or when a worker restarted or left"
  }),
  failedPerSecond: Schema.NullOr(Schema.Number).annotations({
    description: "Dead-lettered (failed + poison) per second"
  }),
  retriedPerSecond: Schema.NullOr(Schema.Number),
  avgLagMs: Schema.NullOr(Schema.Number).annotations({
    description: "Average lag (occurredAt to processing) of the events processed since the previous sample"
  }),
  queues: Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Int })).annotations({
    description: "Ready messages per queue (the DLQ included); null when RabbitMQ did not answer"
  })
})

export const History = Schema.Struct({
  intervalSeconds: Schema.Number.annotations({ description: "Time between samples (OPS_HISTORY_INTERVAL_MS)" }),
  windowSeconds: Schema.Number.annotations({ description: "How far back samples are kept (one hour)" }),
  points: Schema.Array(HistoryPoint).annotations({ description: "Oldest first" })
}).annotations({
  description:
    "Samples this API process took while it ran (kept in its memory: each API has its own, and a restart starts afresh)"
})

export const DeliveriesListParams = Schema.Struct({
  state: Schema.optional(DeliveryState).annotations({ description: "Default: failed" }),
  channel: Schema.optional(DeliveryChannel),
  before: Schema.optional(BigintId).annotations({
    description: "Only ids below this one: the previous page's `next`"
  }),
  limit: Schema.optional(Limit).annotations({ description: "1..500, default 50" })
})

export const DeliveryList = Schema.Struct({
  items: Schema.Array(DeliveryItem).annotations({ description: "Newest first" }),
  next: Schema.NullOr(Schema.String).annotations({ description: "`before` for the next page; null on the last" })
})

export const DeliveryRetryRequest = Schema.Union(
  Schema.Struct({ id: BigintId }),
  Schema.Struct({ all: Schema.Literal(true), channel: Schema.optional(DeliveryChannel) })
).annotations({
  description:
    "`{ id }` puts one failed delivery back to pending (404 if it is not failed); `{ all: true }` every failed one, of `channel` if given"
})

export const DeliveryRetryResponse = Schema.Struct({
  retried: Schema.Array(Schema.String).annotations({ description: "Ids put back to pending, due now" })
})

/** Replay entries older than DLQ_REPLAY_WINDOW too (their event may run twice). */
const Force = Schema.optional(Schema.Boolean)

export const ReplayRequest = Schema.Union(
  Schema.Struct({ id: EntryId, force: Force }),
  Schema.Struct({ all: Schema.Literal(true), force: Force })
).annotations({
  description:
    "`{ id }` replays one entry; `{ all: true }` every replayable entry. Entries older than DLQ_REPLAY_WINDOW are refused (one id: 409 with `tooOld`; all: skipped) unless `force: true`"
})

export const ReplayResponse = Schema.Struct({
  total: Schema.Int.annotations({ description: "DLQ depth when the replay started" }),
  scanned: Schema.Int,
  matched: Schema.Int,
  replayed: Schema.Int,
  skipped: Schema.Int,
  skippedMessages: Schema.Array(Schema.Struct({
    id: Schema.String,
    event: Schema.NullOr(Schema.String),
    eventId: Schema.NullOr(Schema.String),
    reason: Schema.String,
    tooOld: Schema.Boolean.annotations({ description: "Skipped only for its age: `force: true` would replay it" })
  }))
})

export const DiscardRequest = Schema.Struct({ id: EntryId })
export const DiscardResponse = Schema.Struct({ discarded: Schema.String })
export const PurgeResponse = Schema.Struct({ purged: Schema.Int })
