/**
 * Coalesces acks on one channel. Delivery tags on a channel are consecutive,
 * so once every delivery up to tag T is settled, a single `ack(T, multiple)`
 * acknowledges all of them that are still outstanding. One frame per flush
 * instead of one per message: on a busy worker that is most of the socket
 * writes, and much of the broker's work. Flushes run on `setImmediate`, right
 * after the current batch.
 *
 * Settled messages above an unsettled one (a gap) wait for it: with several
 * batches in flight the gap is usually the other batch, done a few ms later.
 * A gap that stays (a message waiting on a retry, say) must not hold the rest
 * in the prefetch window, so messages that have waited `maxWaitMs` to
 * `2 × maxWaitMs` above a gap are acked one by one.
 */
import type { Channel, Message } from "amqplib"

type State = "waiting" | "sent"

interface Entry {
  readonly message: Message
  state: State
  /** The straggler sweep during which it was settled. */
  readonly epoch: number
}

export class AckBatcher {
  /** Settled tags above `low`: "waiting" for a multiple ack, or already "sent" on their own. */
  private readonly above = new Map<number, Entry>()
  /** Every tag <= low is settled. */
  private low = 0
  /** The highest tag <= low that still needs an ack. */
  private pending: Message | undefined
  private waiting = 0
  private scheduled = false
  private epoch = 0
  private sweep: ReturnType<typeof setTimeout> | undefined

  constructor(private readonly channel: Channel, private readonly maxWaitMs = 100) {}

  ack(message: Message): void {
    this.settle(message, "waiting")
  }

  /** Gives a message back to its queue now; it then counts as settled. */
  requeue(message: Message): void {
    this.send(() => this.channel.nack(message, false, true))
    this.settle(message, "sent")
  }

  private settle(message: Message, state: State): void {
    this.above.set(message.fields.deliveryTag, { message, state, epoch: this.epoch })
    if (state === "waiting") this.waiting++
    let next = this.above.get(this.low + 1)
    while (next !== undefined) {
      this.low++
      this.above.delete(this.low)
      if (next.state === "waiting") {
        this.waiting--
        this.pending = next.message
      }
      next = this.above.get(this.low + 1)
    }
    if (!this.scheduled && this.pending !== undefined) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
    if (this.waiting > 0 && this.sweep === undefined) {
      this.sweep = setTimeout(() => this.ackStragglers(), this.maxWaitMs)
      this.sweep.unref()
    }
  }

  private send(f: () => void): void {
    try {
      f()
    } catch {
      // The channel closed: the broker requeues whatever is unacked; idempotency absorbs it.
    }
  }

  flush(): void {
    this.scheduled = false
    const pending = this.pending
    if (pending !== undefined) {
      this.pending = undefined
      this.send(() => this.channel.ack(pending, true))
    }
  }

  /** Acks one by one the messages that have waited above a gap since before the last sweep. */
  private ackStragglers(): void {
    this.sweep = undefined
    const cutoff = this.epoch++
    for (const entry of this.above.values()) {
      if (entry.state !== "waiting" || entry.epoch >= cutoff) continue
      entry.state = "sent"
      this.waiting--
      this.send(() => this.channel.ack(entry.message, false))
    }
    if (this.waiting > 0) {
      this.sweep = setTimeout(() => this.ackStragglers(), this.maxWaitMs)
      this.sweep.unref()
    }
  }
}
