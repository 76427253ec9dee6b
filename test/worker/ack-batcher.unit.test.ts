/**
 * The ack coalescer against a model of RabbitMQ's rules: a single ack of a tag
 * that is not outstanding is a channel error; `multiple` acks every outstanding
 * tag up to the given one. Whatever the order messages are settled in, every
 * message ends acked (or requeued) exactly once, with no channel error.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Channel, Message } from "amqplib"
import { Effect, FastCheck as fc } from "effect"
import { AckBatcher } from "../../src/Broker/AckBatcher.js"

class ModelChannel {
  readonly outstanding = new Set<number>()
  readonly acked = new Set<number>()
  readonly requeued = new Set<number>()
  frames = 0
  errors: Array<string> = []
  deliver(n: number): Array<Message> {
    return Array.from({ length: n }, (_, i) => {
      this.outstanding.add(i + 1)
      return { fields: { deliveryTag: i + 1 } } as unknown as Message
    })
  }
  ack(message: Message, allUpTo = false): void {
    this.frames++
    const tag = message.fields.deliveryTag
    if (!this.outstanding.has(tag)) {
      this.errors.push(`PRECONDITION_FAILED - unknown delivery tag ${tag}`)
      return
    }
    for (const t of allUpTo ? [...this.outstanding].filter((t) => t <= tag) : [tag]) {
      this.outstanding.delete(t)
      this.acked.add(t)
    }
  }
  nack(message: Message, _allUpTo: boolean, _requeue: boolean): void {
    this.frames++
    const tag = message.fields.deliveryTag
    if (!this.outstanding.delete(tag)) this.errors.push(`PRECONDITION_FAILED - unknown delivery tag ${tag}`)
    else this.requeued.add(tag)
  }
}

const setup = (n: number, maxWaitMs = 10) => {
  const channel = new ModelChannel()
  const messages = channel.deliver(n)
  const batcher = new AckBatcher(channel as unknown as Channel, maxWaitMs)
  return { channel, messages, batcher }
}

/** Waits until `done` holds (or fails the test after 2 s): no timing is asserted, only the outcome. */
const eventually = (done: () => boolean) =>
  Effect.promise(async () => {
    const until = Date.now() + 2000
    while (!done() && Date.now() < until) await new Promise((r) => setTimeout(r, 5))
  })

describe("AckBatcher", () => {
  it.live("settled in order: one multiple-ack frame for the whole run", () =>
    Effect.gen(function*() {
      const { batcher, channel, messages } = setup(500)
      for (const m of messages) batcher.ack(m)
      yield* eventually(() => channel.outstanding.size === 0)
      expect(channel.acked.size).toBe(500)
      expect(channel.frames).toBe(1)
      expect(channel.errors).toEqual([])
    }))

  it.live("two batches finishing out of order still cost one frame", () =>
    Effect.gen(function*() {
      const { batcher, channel, messages } = setup(1000, 1000)
      for (const m of messages.slice(500)) batcher.ack(m) // the second batch first
      yield* Effect.sleep("5 millis")
      expect(channel.frames).toBe(0) // waiting for the gap, not acking one by one
      for (const m of messages.slice(0, 500)) batcher.ack(m)
      yield* eventually(() => channel.outstanding.size === 0)
      expect(channel.frames).toBe(1)
      expect(channel.errors).toEqual([])
    }))

  it.live("a gap that stays does not hold the messages above it: they are acked one by one", () =>
    Effect.gen(function*() {
      const { batcher, channel, messages } = setup(5)
      for (const m of messages.slice(1)) batcher.ack(m)
      yield* eventually(() => channel.outstanding.size === 1)
      expect([...channel.outstanding]).toEqual([1])
      batcher.ack(messages[0]!)
      yield* eventually(() => channel.outstanding.size === 0)
      expect(channel.acked.size).toBe(5)
      expect(channel.errors).toEqual([])
    }))

  it.live("any order of acks and requeues: each message settled once, no channel error", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 60 }).chain((n) =>
            fc.tuple(
              fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n }),
              fc.array(fc.boolean(), { minLength: n, maxLength: n }),
              fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n })
            )
          ),
          async ([order, requeue, pauses]) => {
            const { batcher, channel, messages } = setup(order.length, 3)
            for (const [k, i] of order.entries()) {
              if (requeue[i]) batcher.requeue(messages[i]!)
              else batcher.ack(messages[i]!)
              if (pauses[k]! > 0) await new Promise((r) => setTimeout(r, pauses[k]))
            }
            const until = Date.now() + 2000
            while (channel.outstanding.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 2))
            expect(channel.errors).toEqual([])
            expect(channel.outstanding.size).toBe(0)
            expect(channel.acked.size + channel.requeued.size).toBe(order.length)
            expect([...channel.requeued].sort((a, b) => a - b)).toEqual(
              order.filter((i) => requeue[i]).map((i) => i + 1).sort((a, b) => a - b)
            )
          }
        ),
        { numRuns: 60 }
      )
    ))
})
