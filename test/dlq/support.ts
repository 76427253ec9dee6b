/**
 * Helpers for the DLQ tests: put messages in `tickets.dlq` exactly as the
 * worker does (src/Broker/AmqpDelivery.ts `deadLetter`: a copy through the default
 * exchange with the opsdesk-* DLQ headers), read queues, reset a vhost, and
 * the file-wide fixture (`dlqFixture`).
 */
import { afterAll } from "@effect/vitest"
import type { ConfirmChannel, GetMessage } from "amqplib"
import { Context, Effect, Layer, ManagedRuntime } from "effect"
import { DLQ_HEADERS, RETRY_HEADER } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, QUEUES, type QueueType } from "../../src/Broker/Topology.js"
import { Dlq } from "../../src/Dlq/Dlq.js"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { configFrom, withAmqp, withVhost } from "../support/Env.js"

export interface DeadLetterOptions {
  readonly kind?: "poison" | "failed"
  readonly error?: string
  readonly attempts?: number
  /** The original routing key; `null` leaves the header out. */
  readonly routingKey?: string | null
  readonly queue?: string
  readonly failedAt?: Date
  readonly messageId?: string
  readonly extraHeaders?: Record<string, unknown>
}

/** A failed event's DLQ copy (retries spent), or a raw body's (poison). */
export const deadLetter = (
  channel: ConfirmChannel,
  message: DomainEvent | { readonly body: string; readonly event: string },
  options: DeadLetterOptions = {}
) =>
  Effect.promise(async () => {
    const isEvent = !("body" in message)
    const body = isEvent ? JSON.stringify(message) : message.body
    const kind = options.kind ?? (isEvent ? "failed" : "poison")
    const routingKey = options.routingKey === undefined ? message.event : options.routingKey
    const headers: Record<string, unknown> = {
      ...(kind === "failed"
        ? { [RETRY_HEADER]: (options.attempts ?? 3) - 1, "opsdesk-last-error": options.error ?? "Simulated failure" }
        : {}),
      [DLQ_HEADERS.reason]: options.error ??
        (kind === "poison" ? "Body is not valid JSON (Unexpected token)" : "Simulated failure"),
      [DLQ_HEADERS.kind]: kind,
      [DLQ_HEADERS.attempts]: options.attempts ?? (kind === "poison" ? 1 : 3),
      ...(routingKey === null ? {} : { [DLQ_HEADERS.routingKey]: routingKey }),
      [DLQ_HEADERS.queue]: options.queue ?? `${message.event}.queue`,
      [DLQ_HEADERS.failedAt]: (options.failedAt ?? new Date()).toISOString(),
      ...options.extraHeaders
    }
    channel.publish("", DLQ, Buffer.from(body), {
      persistent: true,
      contentType: "application/json",
      type: message.event,
      messageId: options.messageId ?? (isEvent ? message.eventId : undefined),
      headers
    })
    await channel.waitForConfirms()
  })

/** Takes every ready message off a queue (acked: they are gone). */
export const drain = (channel: ConfirmChannel, queue: string) =>
  Effect.promise(async () => {
    const out: Array<GetMessage> = []
    for (;;) {
      const m = await channel.get(queue, { noAck: true })
      if (m === false) return out
      out.push(m)
    }
  })

export const depth = (channel: ConfirmChannel, queue: string = DLQ) =>
  Effect.promise(() => channel.checkQueue(queue)).pipe(Effect.map((q) => q.messageCount))

/** Empties the DLQ and the event queues. */
export const reset = (channel: ConfirmChannel) =>
  Effect.promise(() => Promise.all([DLQ, ...QUEUES].map((q) => channel.purgeQueue(q)))).pipe(Effect.asVoid)

export const bodyOf = (m: GetMessage) => m.content.toString("utf8")

class TestBroker extends Context.Tag("test/dlq/TestBroker")<TestBroker, {
  readonly url: string
  readonly vhost: string
  readonly channel: ConfirmChannel
}>() {}

export interface DlqTestEnv {
  readonly dlq: Dlq
  readonly channel: ConfirmChannel
  readonly vhost: string
  /** AMQP_URL of the vhost, for a child process (the CLI) to use. */
  readonly url: string
}

/**
 * One vhost (its topology declared), one helper connection and one Dlq
 * service (on `config` besides AMQP_URL) for a whole test file: a
 * ManagedRuntime disposed after the file's last test. Returns `test`, which
 * runs a body on empty queues.
 */
export const dlqFixture = (options: {
  readonly name: string
  readonly queueType: QueueType
  readonly retryDelaysMs: ReadonlyArray<number>
  readonly config?: Record<string, string | number>
}) => {
  const TestBrokerLive = Layer.scoped(
    TestBroker,
    Effect.gen(function*() {
      const { url, vhost } = yield* withVhost(options.name)
      const { channel } = yield* withAmqp(url)
      yield* declareTopology(channel, { queueType: options.queueType, retryDelaysMs: options.retryDelaysMs })
      return { url, vhost, channel }
    })
  )
  const DlqTest = Layer.scopedContext(
    Effect.flatMap(TestBroker, ({ url }) =>
      Layer.build(Dlq.Default).pipe(
        Effect.withConfigProvider(configFrom({ ...options.config, AMQP_URL: url }))
      ))
  )
  const runtime = ManagedRuntime.make(DlqTest.pipe(Layer.provideMerge(TestBrokerLive)))
  afterAll(() => runtime.dispose(), 30_000)

  return <A, E>(body: (env: DlqTestEnv) => Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const { channel, url, vhost } = yield* TestBroker
      const dlq = yield* Dlq
      yield* reset(channel)
      return yield* body({ dlq, channel, vhost, url })
    }).pipe(Effect.provide(runtime))
}
