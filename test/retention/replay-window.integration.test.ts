/**
 * A dead letter older than DLQ_REPLAY_WINDOW is not replayed without force:
 * its event may have been processed and its dedupe claim removed by
 * retention since, so a replay could run it twice. Against the real
 * RabbitMQ, in a vhost of its own, with a one-hour replay window.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { ConfirmChannel } from "amqplib"
import { Context, Effect, Layer, ManagedRuntime } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, queueFor } from "../../src/Broker/Topology.js"
import { Dlq } from "../../src/Dlq/Dlq.js"
import { deadLetter, depth, drain, reset } from "../dlq/support.js"
import { configFrom, ticketCreated, withAmqp, withVhost } from "../support/Env.js"

class TestBroker extends Context.Tag("test/retention/TestBroker")<TestBroker, {
  readonly url: string
  readonly channel: ConfirmChannel
}>() {}

const TestBrokerLive = Layer.scoped(
  TestBroker,
  Effect.gen(function*() {
    const { url } = yield* withVhost("replaywindow")
    const { channel } = yield* withAmqp(url)
    yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })
    return { url, channel }
  })
)

const DlqTest = Layer.scopedContext(
  Effect.flatMap(TestBroker, ({ url }) =>
    Layer.build(Dlq.Default).pipe(
      Effect.withConfigProvider(configFrom({ AMQP_URL: url, DLQ_REPLAY_WINDOW: "1 hours" }))
    ))
)

const runtime = ManagedRuntime.make(DlqTest.pipe(Layer.provideMerge(TestBrokerLive)))
afterAll(() => runtime.dispose(), 30_000)

const test = <A, E>(body: (env: { readonly dlq: Dlq; readonly channel: ConfirmChannel }) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const { channel } = yield* TestBroker
    const dlq = yield* Dlq
    yield* reset(channel)
    return yield* body({ dlq, channel }).pipe(Effect.ensuring(reset(channel)))
  }).pipe(Effect.provide(runtime))

const ago = (ms: number) => new Date(Date.now() - ms)
const HOUR = 3_600_000

describe("DLQ replay window", () => {
  it.live(
    "replay skips messages older than DLQ_REPLAY_WINDOW and says why; they stay in the DLQ, in order",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const fresh = ticketCreated()
          const old = ticketCreated()
          const older = ticketCreated()
          yield* deadLetter(channel, old, { failedAt: ago(HOUR + 60_000) })
          yield* deadLetter(channel, fresh, { failedAt: ago(HOUR - 60_000) })
          yield* deadLetter(channel, older, { failedAt: ago(30 * 24 * HOUR) })

          const result = yield* dlq.replay({ all: true })
          expect(result).toMatchObject({ matched: 3, replayed: 1, skipped: 2, forced: 0 })
          expect(result.skippedMessages.map((s) => [s.eventId, s.tooOld])).toEqual([
            [old.eventId, true],
            [older.eventId, true]
          ])
          expect(result.skippedMessages[0]!.reason).toMatch(/longer than DLQ_REPLAY_WINDOW \(1h\)/)
          expect(yield* depth(channel, queueFor("ticket.created"))).toBe(1)
          const left = yield* drain(channel, DLQ)
          expect(left.map((m) => JSON.parse(m.content.toString("utf8")).eventId)).toEqual([old.eventId, older.eventId])
        })
      ),
    120_000
  )

  it.live(
    "replayOne refuses an old message without force, and replays it with force",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const old = ticketCreated()
          yield* deadLetter(channel, old, { failedAt: ago(2 * HOUR) })
          const [entry] = yield* dlq.list()
          expect(entry?.eventId).toBe(old.eventId)

          const refused = yield* dlq.replayOne({ id: entry!.id })
          expect(refused).toMatchObject({ matched: 1, replayed: 0, skipped: 1 })
          expect(refused.skippedMessages[0]).toMatchObject({ tooOld: true })
          expect(yield* depth(channel)).toBe(1)

          const forced = yield* dlq.replayOne({ id: entry!.id, force: true })
          expect(forced).toMatchObject({ matched: 1, replayed: 1, skipped: 0, forced: 1 })
          expect(yield* depth(channel)).toBe(0)
          const delivered = yield* drain(channel, queueFor("ticket.created"))
          expect(delivered.map((m) => JSON.parse(m.content.toString("utf8")).eventId)).toEqual([old.eventId])
        })
      ),
    120_000
  )

  it.live(
    "a message that carries no failure time at all is treated as too old",
    () =>
      test(({ channel, dlq }) =>
        Effect.gen(function*() {
          const event = ticketCreated()
          // No opsdesk-failed-at, no x-death, no AMQP timestamp: its age is unknown.
          yield* Effect.promise(async () => {
            channel.publish("", DLQ, Buffer.from(JSON.stringify(event)), {
              persistent: true,
              headers: { [DLQ_HEADERS.kind]: "failed", [DLQ_HEADERS.routingKey]: "ticket.created" }
            })
            await channel.waitForConfirms()
          })
          const result = yield* dlq.replay({ all: true })
          expect(result).toMatchObject({ replayed: 0, skipped: 1 })
          expect(result.skippedMessages[0]?.reason).toMatch(/failure time is unknown/)
          expect(yield* dlq.replay({ all: true }, { force: true })).toMatchObject({ replayed: 1, forced: 1 })
        })
      ),
    120_000
  )
})
