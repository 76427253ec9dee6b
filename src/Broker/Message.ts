/**
 * Broker messages in OpsDesk's own terms, so that code outside src/Broker
 * reads and builds them without depending on amqplib (whose message objects
 * fit these shapes as they are).
 */

/** The AMQP properties OpsDesk reads or carries over to a copy. */
export interface MessageProperties {
  readonly contentType?: string | undefined
  readonly contentEncoding?: string | undefined
  readonly headers?: Readonly<Record<string, unknown>> | undefined
  readonly priority?: number | undefined
  readonly correlationId?: string | undefined
  readonly messageId?: string | undefined
  /** Seconds since the epoch (AMQP timestamps have no finer unit). */
  readonly timestamp?: number | undefined
  readonly type?: string | undefined
  readonly appId?: string | undefined
}

/** A message as read from a queue. */
export interface QueuedMessage {
  readonly content: Buffer
  readonly fields: { readonly exchange: string; readonly routingKey: string }
  readonly properties: MessageProperties
}

export interface PublishOptions extends MessageProperties {
  readonly persistent?: boolean
  /** An unroutable message comes back (basic.return) instead of vanishing. */
  readonly mandatory?: boolean
}

export interface OutgoingMessage {
  readonly exchange: string
  readonly routingKey: string
  readonly content: Buffer
  readonly options: PublishOptions
}

/**
 * Publish options of a copy of a message: persistent, with the original's
 * identity (messageId, type, content type and encoding, ...) and `headers`.
 */
export const copyOptions = (
  properties: MessageProperties,
  headers: Readonly<Record<string, unknown>>
): PublishOptions => ({
  persistent: true,
  messageId: properties.messageId,
  type: properties.type,
  contentType: properties.contentType,
  contentEncoding: properties.contentEncoding,
  appId: properties.appId,
  timestamp: properties.timestamp,
  correlationId: properties.correlationId,
  priority: properties.priority,
  headers
})
