/**
 * The `Delivery` of an amqplib message: every settle is once-only and bound
 * to the channel the message came on; retry and DLQ copies are published on
 * that connection's confirm channel and confirmed before the caller acks.
 */
import type { ConfirmChannel, ConsumeMessage } from "amqplib"
import { Effect } from "effect"
import { clip } from "../Kit/Text.js"
import type { AckBatcher } from "./AckBatcher.js"
import { BrokerError } from "./Amqp.js"
import { type DeadLetterOptions, type Delivery, UnencodableCopy } from "./Delivery.js"
import { deadLetterHeaders, describeDropped, DLQ_HEADERS, retryHeaders, trimHeaders } from "./Headers.js"
import { copyOptions, type OutgoingMessage } from "./Message.js"
import { publishConfirmed } from "./Publish.js"
import { DLQ, RETRY_EXCHANGE, RETRY_RETURN_EXCHANGE, retryRoutingKey } from "./Topology.js"

/** Publishes one copy and waits for its confirm; one that cannot be encoded fails apart, having sent nothing. */
const publishCopy = (
  channel: ConfirmChannel,
  message: OutgoingMessage
): Effect.Effect<void, BrokerError | UnencodableCopy> =>
  Effect.flatMap(Effect.flatten(publishConfirmed(channel, [message])), ([outcome]): Effect.Effect<
    void,
    BrokerError | UnencodableCopy
  > =>
    outcome === undefined || outcome._tag === "Confirmed"
      ? Effect.void
      : outcome._tag === "Unencodable"
      ? Effect.fail(new UnencodableCopy({ message: outcome.error.message }))
      : outcome._tag === "Refused"
      ? Effect.fail(outcome.error)
      : Effect.void)

/** A class, not an object of closures: one is made per message on the hot path. */
export class AmqpDelivery implements Delivery {
  readonly routingKey: string
  private settled = false

  constructor(
    private readonly msg: ConsumeMessage,
    readonly queue: string,
    private readonly acks: AckBatcher,
    private readonly confirm: ConfirmChannel,
    /** False once either channel closed: settling is then a no-op (the broker redelivers). */
    private readonly open: { readonly value: boolean }
  ) {
    // A message back from a retry queue arrives with routing key `<delay>ms.<queue>`; its first routing key travels in a header.
    const original = msg.properties.headers?.[DLQ_HEADERS.routingKey]
    this.routingKey = msg.fields.exchange === RETRY_RETURN_EXCHANGE && typeof original === "string"
      ? original
      : msg.fields.routingKey
  }

  get body(): Uint8Array {
    return this.msg.content
  }
  get messageId(): string | undefined {
    return this.msg.properties.messageId
  }
  get headers(): Readonly<Record<string, unknown>> {
    return this.msg.properties.headers ?? {}
  }
  get redelivered(): boolean {
    return this.msg.fields.redelivered
  }
  get ack(): Effect.Effect<void> {
    return Effect.sync(() => this.settle(() => this.acks.ack(this.msg)))
  }
  get requeue(): Effect.Effect<void> {
    return Effect.sync(() => this.settle(() => this.acks.requeue(this.msg)))
  }

  private settle(f: () => void): void {
    if (this.settled || !this.open.value) return
    this.settled = true
    try {
      f()
    } catch {
      // The channel closed under us: the broker will redeliver.
    }
  }

  retryLater(
    { attempt, delayMs, error }: { readonly delayMs: number; readonly attempt: number; readonly error: string }
  ) {
    return publishCopy(this.confirm, {
      exchange: RETRY_EXCHANGE,
      routingKey: retryRoutingKey(delayMs, this.queue),
      content: this.msg.content,
      options: copyOptions(
        this.msg.properties,
        retryHeaders(this.headers, { attempt, routingKey: this.routingKey, error })
      )
    })
  }

  deadLetter(options: DeadLetterOptions) {
    const copy = (headers: Readonly<Record<string, unknown>>, reason: string): OutgoingMessage => ({
      exchange: "",
      routingKey: DLQ,
      content: this.msg.content,
      options: copyOptions(
        this.msg.properties,
        deadLetterHeaders(headers, {
          ...options,
          reason,
          routingKey: this.routingKey,
          queue: this.queue,
          failedAt: new Date()
        })
      )
    })
    return publishCopy(this.confirm, copy(this.headers, options.reason)).pipe(
      // Never back to its queue for this: the copy goes with the headers that fit, and says which did not.
      Effect.catchTag("UnencodableCopy", (e) => {
        const { dropped, kept } = trimHeaders(this.headers)
        const note = `; headers dropped to copy it: ${describeDropped(dropped)} (${e.message})`
        return publishCopy(this.confirm, copy(kept, `${clip(options.reason, 1000)}${note}`))
      }),
      Effect.catchTag("UnencodableCopy", (e) => Effect.fail(new BrokerError({ message: e.message })))
    )
  }
}
