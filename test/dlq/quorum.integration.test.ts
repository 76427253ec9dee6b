/**
 * QUEUE_TYPE=quorum run, not only declared (issue 12), on the RabbitMQ of this
 * machine (3.10), in a vhost of its own:
 *  - the topology's quorum arguments are accepted, and declaring twice works;
 *  - the DLQ listing (the dashboard's, every 2 s) neither drops nor reorders
 *    dead letters, over more listings than RabbitMQ 4's default delivery
 *    limit (20): a quorum queue puts given-back messages behind those given
 *    back before, which rotated them on every partial listing;
 *  - an event queue's delivery limit dead-letters a message requeued without
 *    end to the DLQ, where it is listed as `crash-loop`;
 *  - a retry queue's TTL still brings a message back to its queue.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import {
  declareTopology,
  DLQ,
  DLQ_DELIVERY_LIMIT,
  EXCHANGE,
  queueFor,
  RETRY_EXCHANGE,
  retryRoutingKey
} from "../../src/Broker/Topology.js"
import { QUORUM_DELIVERY_LIMIT } from "../../src/Config.js"
import { ticketCreated, waitUntil } from "../support/Env.js"
import { deadLetter, depth, dlqFixture } from "./support.js"

const exec = promisify(execFile)
const RETRY_DELAY = 200

const test = dlqFixture({
  name: "quorum",
  queueType: "quorum",
  retryDelaysMs: [RETRY_DELAY],
  config: { QUEUE_TYPE: "quorum", MAX_RETRIES: 1, RETRY_INITIAL_DELAY_MS: RETRY_DELAY, RETRY_MAX_DELAY_MS: RETRY_DELAY }
})

/** The queues' type and arguments, as RabbitMQ reports them. */
const queueInfo = (vhost: string) =>
  Effect.promise(() =>
    exec("rabbitmqctl", ["-q", "list_queues", "-p", vhost, "name", "type", "arguments", "--formatter", "json"], {
      timeout: 30_000
    })
  ).pipe(
    // `arguments` comes as a list of [name, AMQP type, value].
    Effect.map(({ stdout }) =>
      new Map(
        (JSON.parse(stdout) as Array<{ name: string; type: string; arguments: Array<[string, string, unknown]> }>)
          .map((q) => [q.name, { type: q.type, arguments: Object.fromEntries(q.arguments.map(([k, , v]) => [k, v])) }])
      )
    )
  )

describe("quorum queues", () => {
  it.live(
    "the topology declares quorum queues with at-least-once dead-lettering and delivery limits, twice",
    () =>
      test(({ channel, vhost }) =>
        Effect.gen(function*() {
          // Declared once by the file's setup and once by the Dlq service; once more here.
          yield* declareTopology(channel, { queueType: "quorum", retryDelaysMs: [RETRY_DELAY] })
          const queues = yield* queueInfo(vhost)
          const event = queues.get(queueFor("ticket.created"))!
          expect(event.type).toBe("quorum")
          expect(event.arguments).toMatchObject({
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": QUORUM_DELIVERY_LIMIT,
            "x-dead-letter-routing-key": DLQ
          })
          expect(queues.get(`${RETRY_EXCHANGE}.${RETRY_DELAY}ms`)!.arguments).toMatchObject({
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-message-ttl": RETRY_DELAY
          })
          const dlq = queues.get(DLQ)!
          expect(dlq.type).toBe("quorum")
          expect(dlq.arguments).toMatchObject({ "x-delivery-limit": DLQ_DELIVERY_LIMIT })
        })
      ),
    60_000
  )

  it.live(
    "listing the DLQ again and again, with any limit, neither drops nor reorders its dead letters",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const events = Array.from({ length: 12 }, () => ticketCreated())
          for (const e of events) yield* deadLetter(channel, e)
          const all = (yield* dlq.list({ limit: 100 })).map((e) => e.eventId)
          expect(all).toEqual(events.map((e) => e.eventId))

          // More listings than RabbitMQ 4's default delivery limit; partial ones rotated a quorum queue's given-back messages.
          const limits = [3, 7, 1, 12, 5, 50]
          for (let i = 0; i < 30; i++) {
            const limit = limits[i % limits.length]!
            const listed = (yield* dlq.list({ limit })).map((e) => e.eventId)
            expect(listed, `listing ${i} (limit ${limit})`).toEqual(all.slice(0, limit))
          }
          yield* waitUntil("the DLQ to have all its messages ready", Effect.map(depth(channel), (n) => n === 12))

          // Removing one from the middle keeps the others in order.
          const [, , third] = yield* dlq.list({ limit: 3 })
          yield* dlq.discard({ id: third!.id })
          const rest = (yield* dlq.list({ limit: 100 })).map((e) => e.eventId)
          expect(rest).toEqual(all.filter((id) => id !== third!.eventId))
          expect((yield* dlq.list({ limit: 4 })).map((e) => e.eventId)).toEqual(rest.slice(0, 4))
        })
      ),
    120_000
  )

  it.live(
    "an event queue's delivery limit dead-letters a message requeued without end, listed as crash-loop",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const looping = ticketCreated()
          const queue = queueFor("ticket.created")
          channel.publish(EXCHANGE, looping.event, Buffer.from(JSON.stringify(looping)), {
            persistent: true,
            messageId: looping.eventId
          })
          yield* Effect.promise(() => channel.waitForConfirms())
          // A consumer that gives it back every time (a worker crashing on it, as the broker sees it).
          let deliveries = 0
          yield* Effect.promise(async () => {
            for (let tries = 0; tries < 2000 && deliveries <= QUORUM_DELIVERY_LIMIT + 5; tries++) {
              const m = await channel.get(queue, { noAck: false })
              if (m === false) {
                if ((await channel.checkQueue(DLQ)).messageCount > 0) return
                await new Promise((r) => setTimeout(r, 10))
                continue
              }
              deliveries++
              channel.nack(m, false, true)
            }
          })
          expect(deliveries).toBe(QUORUM_DELIVERY_LIMIT + 1)
          yield* waitUntil("the looping message to reach the DLQ", Effect.map(depth(channel), (n) => n === 1))
          const [entry] = yield* dlq.list({ limit: 10 })
          expect(entry).toMatchObject({
            eventId: looping.eventId,
            kind: "crash-loop",
            originalQueue: queue,
            replayable: true
          })
          expect(entry!.error).toMatch(/delivery_limit/)
        })
      ),
    60_000
  )

  it.live("a retry queue's TTL brings a message back to its queue", () =>
    test(({ channel }) =>
      Effect.gen(function*() {
        const event = ticketCreated()
        const queue = queueFor("ticket.created")
        channel.publish(RETRY_EXCHANGE, retryRoutingKey(RETRY_DELAY, queue), Buffer.from(JSON.stringify(event)), {
          persistent: true,
          messageId: event.eventId
        })
        yield* Effect.promise(() => channel.waitForConfirms())
        yield* waitUntil("the retried message back on its queue", Effect.map(depth(channel, queue), (n) => n === 1))
      })
    ), 60_000)
})
