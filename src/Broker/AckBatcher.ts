/**
 * Coalesces acks on one channel. Delivery tags on a channel are consecutive,
 * so once every delivery up to tag T is settled, a single `ack(T, multiple)`
 * acknowledges all of them that are still outstanding. One frame per flush
 * instead of one per message: on a busy worker that is most of the socket
 * writes. Flushes run on `setImmediate`, right after the current batch.
 *
 * A slow message (waiting on a retry, say) leaves a gap below later ones; so
 * that the gap cannot fill the prefetch window, settled messages above it are
 * acked one by one once more than `maxWaiting` of them wait.
 */
import type { Channel, Message } from "amqplib"

type State = "waiting" | "sent"

export class AckBatcher {
  /** Settled tags above `low`: "waiting" for a multiple ack, or already "sent" on their own. */
  private readonly above = new Map<number, { readonly message: Message; state: State }>()
  /** Every tag <= low is settled. */
  private low = 0
  /** The highest tag <= low that still needs an ack. */
  private pending: Message | undefined
  private waiting = 0
  private scheduled = false

  constructor(private readonly channel: Channel, private readonly maxWaiting = 64) {}

  ack(message: Message): void {
    this.settle(message, "waiting")
  }

  /** Gives a message back to its queue now; it then counts as settled. */
  requeue(message: Message): void {
    this.send(() => this.channel.nack(message, false, true))
    this.settle(message, "sent")
  }

  private settle(message: Message, state: State): void {
    this.above.set(message.fields.deliveryTag, { message, state })
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
    if (!this.scheduled && (this.pending !== undefined || this.waiting > 0)) {
      this.scheduled = true
      setImmediate(() => this.flush())
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
    if (this.waiting > this.maxWaiting) {
      for (const entry of this.above.values()) {
        if (entry.state !== "waiting") continue
        entry.state = "sent"
        this.send(() => this.channel.ack(entry.message, false))
      }
      this.waiting = 0
    }
  }
}
