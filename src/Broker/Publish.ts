/**
 * The one way OpsDesk publishes: on a confirm channel, then waiting for the
 * broker's answer to every message. The relay's publisher sends batches
 * (pipelined: it sends the next while these are confirmed), the delivery
 * adapter a retry or DLQ copy, the DLQ tools replayed copies. The relay's
 * events and the replayed copies are mandatory, so an unroutable one is
 * reported (`Returned`) instead of vanishing; a message amqplib cannot encode
 * is reported as such (`Unencodable`), having sent nothing.
 */
import type { ConfirmChannel, Message } from "amqplib"
import { Deferred, Effect } from "effect"
import { describe } from "../Kit/Cause.js"
import { BrokerError } from "./Amqp.js"
import type { OutgoingMessage } from "./Message.js"

export type PublishOutcome =
  | { readonly _tag: "Confirmed" }
  /** Mandatory, and no queue is bound to its routing key. */
  | { readonly _tag: "Returned" }
  /** `sent` is false when publishing threw (the channel is gone), true when the broker refused it or never answered. */
  | { readonly _tag: "Refused"; readonly error: BrokerError; readonly sent: boolean }
  /** amqplib could not encode it (a header table over its 64 KiB buffer, a value it has no type for): never sent. */
  | { readonly _tag: "Unencodable"; readonly error: BrokerError }

/** A connection that dies mid-publish may never answer: the wait for confirms is bounded. */
const CONFIRM_TIMEOUT = "15 seconds"

const confirmed: PublishOutcome = { _tag: "Confirmed" }
const returned: PublishOutcome = { _tag: "Returned" }
const unanswered: PublishOutcome = {
  _tag: "Refused",
  sent: true,
  error: new BrokerError({ message: `RabbitMQ did not confirm the publish within ${CONFIRM_TIMEOUT}` })
}

const sameMessage = (back: Message, sent: OutgoingMessage) =>
  back.fields.routingKey === sent.routingKey &&
  back.properties.messageId === sent.options.messageId &&
  back.content.equals(sent.content)

/**
 * Publishes every message now and returns the wait for the broker's answers,
 * one per message in order. RabbitMQ sends a basic.return before the
 * basic.ack of the same message, so every return is in once all are
 * answered. Should two identical mandatory messages share a call and one be
 * returned, both count as returned: one copy too many is kept, never one too few.
 */
export const publishConfirmed = (
  channel: ConfirmChannel,
  messages: ReadonlyArray<OutgoingMessage>
): Effect.Effect<Effect.Effect<ReadonlyArray<PublishOutcome>>> =>
  Effect.gen(function*() {
    if (messages.length === 0) return Effect.succeed([])
    const answered = yield* Deferred.make<void>()
    const outcomes: Array<PublishOutcome | undefined> = new Array(messages.length)
    const back: Array<Message> = []
    const onReturn = (m: Message) => {
      back.push(m)
    }
    const listens = messages.some((m) => m.options.mandatory === true)
    if (listens) channel.on("return", onReturn)
    const stopListening = Effect.sync(() => {
      if (listens) channel.off("return", onReturn)
    })
    let pending = messages.length
    const answer = (i: number, outcome: PublishOutcome) => {
      if (outcomes[i] !== undefined) return
      outcomes[i] = outcome
      if (--pending === 0) Deferred.unsafeDone(answered, Effect.void)
    }
    messages.forEach((m, i) => {
      try {
        channel.publish(m.exchange, m.routingKey, m.content, m.options, (err) =>
          answer(
            i,
            err
              ? {
                _tag: "Refused",
                sent: true,
                error: new BrokerError({ message: `Publish not confirmed: ${describe(err)}`, cause: err })
              }
              : confirmed
          ))
      } catch (cause) {
        // amqplib encodes before it writes (and registers the confirm callback after), so an encoding
        // error leaves the channel as it was; a closed channel throws its own IllegalOperationError.
        answer(
          i,
          cause instanceof RangeError || cause instanceof TypeError
            ? {
              _tag: "Unencodable",
              error: new BrokerError({ message: `The message cannot be encoded: ${describe(cause)}`, cause })
            }
            : {
              _tag: "Refused",
              sent: false,
              error: new BrokerError({ message: `Publish failed: ${describe(cause)}`, cause })
            }
        )
      }
    })
    return Deferred.await(answered).pipe(
      Effect.timeoutOption(CONFIRM_TIMEOUT),
      Effect.map(() =>
        outcomes.map((o, i) =>
          o === undefined
            ? unanswered
            : o._tag === "Confirmed" && back.some((m) => sameMessage(m, messages[i]!))
            ? returned
            : o
        )
      ),
      Effect.ensuring(stopListening)
    )
  })

const firstFailure = (
  messages: ReadonlyArray<OutgoingMessage>,
  outcomes: ReadonlyArray<PublishOutcome>
): Effect.Effect<void, BrokerError> => {
  for (const [i, o] of outcomes.entries()) {
    if (o._tag === "Refused" || o._tag === "Unencodable") return Effect.fail(o.error)
    if (o._tag === "Returned") {
      return Effect.fail(new BrokerError({ message: `No queue is bound to routing key ${messages[i]!.routingKey}` }))
    }
  }
  return Effect.void
}

/** Sends every message now; the returned wait succeeds once the broker confirmed all of them. */
export const publishAll = (channel: ConfirmChannel, messages: ReadonlyArray<OutgoingMessage>) =>
  Effect.map(
    publishConfirmed(channel, messages),
    (wait) => Effect.flatMap(wait, (outcomes) => firstFailure(messages, outcomes))
  )

/** Publishes one message and waits for the broker's confirmation. */
export const publishOne = (channel: ConfirmChannel, message: OutgoingMessage): Effect.Effect<void, BrokerError> =>
  Effect.flatten(publishAll(channel, [message]))
