/**
 * Broker fuzzing: the real worker in-process against the real RabbitMQ (its
 * own vhost), PostgreSQL and Redis. fast-check publishes, on every queue
 * (straight to it, or through the topic exchange): random bytes, bad JSON,
 * JSON of the wrong shape, and valid events — with missing or odd headers
 * (`x-retry-count` / `opsdesk-retry-count` negative, huge, fractional,
 * non-numeric, tables, arrays; garbage `traceparent`; no messageId, an empty
 * one, a foreign one) and odd properties.
 *
 * Each message must end up either processed (one `processed_events` row) or
 * in `tickets.dlq` with its reason in `opsdesk-error` — which one is decided
 * by the event Schema (poison), by the queue it came on (a valid event on
 * another event's queue is `invalid`) and by the database (a valid event whose
 * ticket or message does not exist is `invalid`; most of them are made to
 * exist first) — and after every batch a valid event published last must be
 * processed: the worker keeps consuming.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import type { ConfirmChannel, GetMessage, Options } from "amqplib"
import { Arbitrary, Context, Effect, Either, FastCheck as fc, Layer, Ref } from "effect"
import { DLQ_HEADERS } from "../../src/Broker/Headers.js"
import { declareTopology, DLQ, EXCHANGE, queueFor, QUEUES } from "../../src/Broker/Topology.js"
import { decodeEventJson, DomainEvent, EVENT_NAMES } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import { clip } from "../../src/Kit/Text.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { FaultsNone } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { withEntities } from "../support/Entities.js"
import {
  configFrom,
  deleteEventRows,
  InfraLive,
  ticketCreated,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

// ------------------------------------------------------------------ world ---

interface World {
  readonly channel: ConfirmChannel
  /** Every DLQ message read so far and not yet matched to a published one. */
  readonly dlq: Ref.Ref<ReadonlyArray<GetMessage>>
}
class BrokerWorld extends Context.Tag("test/BrokerWorld")<BrokerWorld, World>() {}

const workerConfig = (url: string) => ({
  AMQP_URL: url,
  MAX_RETRIES: 2,
  RETRY_INITIAL_DELAY_MS: 100,
  RETRY_MAX_DELAY_MS: 200,
  IMMEDIATE_RETRIES: 1,
  IMMEDIATE_RETRY_DELAY_MS: 5,
  METRICS_INTERVAL_MS: 600_000,
  AMQP_RECONNECT_INITIAL_MS: 100,
  AMQP_RECONNECT_MAX_MS: 500,
  PREFETCH: 50,
  WORKER_BATCH_SIZE: 20,
  WORKER_CONCURRENCY: 2
})

/** A vhost with the topology, one publishing connection, and the worker consuming it. */
const WorldLive = Layer.scoped(
  BrokerWorld,
  Effect.gen(function*() {
    const { url } = yield* withVhost("brokerfuzz")
    const { channel } = yield* withAmqp(url)
    yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100, 200] })
    yield* Layer.build(
      WorkerLive.pipe(
        Layer.provideMerge(
          Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsNone, WorkerMetricsLive, FatalLive)
        )
      )
    ).pipe(Effect.withConfigProvider(configFrom(workerConfig(url))))
    return BrokerWorld.of({ channel, dlq: yield* Ref.make<ReadonlyArray<GetMessage>>([]) })
  })
).pipe(Layer.provideMerge(InfraLive))

// --------------------------------------------------------------- messages ---

interface Published {
  readonly describe: string
  /** Where it went: a queue through the default exchange, or an event name through the topic exchange. */
  readonly route: { readonly exchange: string; readonly routingKey: string; readonly queue: string }
  readonly body: Uint8Array
  readonly options: Options.Publish
  /** If the body is a valid event: whether the ticket or message it names is made to exist first. */
  readonly real: boolean
}

const eventArb = Arbitrary.make(DomainEvent)
const validJson = eventArb.map((e) => JSON.stringify(e))

const route = fc.oneof(
  fc.constantFrom(...QUEUES).map((queue) => ({ exchange: "", routingKey: queue, queue })),
  fc.constantFrom(...EVENT_NAMES).map((name) => ({ exchange: EXCHANGE, routingKey: name, queue: queueFor(name) }))
)

/** Values of every AMQP field type amqplib writes, and the odd retry counts. */
const headerValue = fc.oneof(
  fc.integer({ min: -1_000, max: -1 }),
  fc.constantFrom(0, 1, 2, 3, 4, 0.5, -0.5, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER),
  // Explicit doubles. (Not NaN or ±Infinity: RabbitMQ cannot parse those and closes the publisher's connection.)
  fc.constantFrom(1e300, -1e-300, 2.5).map((value) => ({ "!": "double", value })),
  fc.constantFrom("abc", "", " 5 ", "1e3", "-3", "0x10", "999999999999999999999", "2", "NaN"),
  fc.string({ maxLength: 12 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  // (A key "!" would be amqplib's type annotation, not a table.)
  fc.dictionary(fc.string({ maxLength: 5 }).filter((k) => k !== "!"), fc.integer(), { maxKeys: 2 }),
  fc.constant({ "!": "timestamp", value: 1_700_000_000 }),
  fc.constant(Buffer.from("bytes"))
)
const headers = fc.option(
  fc.record({
    "x-retry-count": headerValue,
    "opsdesk-retry-count": headerValue,
    traceparent: fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constant("00-00000000000000000000000000000000-0000000000000000-01")
    ),
    "opsdesk-original-routing-key": fc.string({ maxLength: 20 }),
    "x-death": fc.constantFrom("garbage", 42),
    "x-fuzz": fc.string({ maxLength: 20 })
  }, { requiredKeys: [] }),
  { nil: undefined }
)
const properties = fc.record({
  messageId: fc.option(fc.oneof(fc.uuid(), fc.string({ maxLength: 20 }), fc.constant("")), { nil: undefined }),
  contentType: fc.option(fc.constantFrom("application/json", "text/plain", "application/octet-stream", ""), {
    nil: undefined
  }),
  contentEncoding: fc.option(fc.constantFrom("gzip", "utf-16", "identity"), { nil: undefined }),
  type: fc.option(fc.constantFrom(...EVENT_NAMES, "nonsense"), { nil: undefined }),
  priority: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }),
  headers
}, { requiredKeys: [] })

/** A valid event's JSON with one value replaced (it may or may not still be valid: the Schema decides). */
const mutated = fc.tuple(
  eventArb,
  fc.constantFrom(
    "event",
    "eventId",
    "occurredAt",
    "payload",
    "payload.id",
    "payload.ownerId",
    "payload.status",
    "payload.title",
    "payload.changedFields"
  ),
  fc.jsonValue({ maxDepth: 2 })
).map(
  ([event, path, value]) => {
    const copy = JSON.parse(JSON.stringify(event)) as Record<string, Record<string, unknown>>
    const [head, tail] = path.split(".") as [string, string | undefined]
    if (tail === undefined) (copy as Record<string, unknown>)[head] = value
    else if (typeof copy[head] === "object" && copy[head] !== null) copy[head]![tail] = value
    return JSON.stringify(copy)
  }
)

const body = fc.oneof(
  // Random bytes (empty included).
  fc.uint8Array({ maxLength: 300 }).map((b) => ({ kind: "bytes", body: b })),
  // Bad JSON: random text, cut events, deep nesting.
  fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.tuple(validJson, fc.double({ min: 0, max: 1, noNaN: true })).map(([j, at]) =>
      j.slice(0, Math.floor(j.length * at))
    ),
    fc.integer({ min: 100, max: 20_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
    fc.integer({ min: 100, max: 5_000 }).map((n) =>
      `{"event":"ticket.created","eventId":${"[".repeat(n)}${"]".repeat(n)}}`
    )
  ).map((text) => ({ kind: "bad JSON", body: Buffer.from(text) })),
  // JSON of the wrong shape.
  fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    mutated,
    fc.tuple(eventArb, fc.constantFrom(...EVENT_NAMES, "ticket.deleted", "", "TICKET.CREATED")).map(([e, name]) =>
      JSON.stringify({ ...e, event: name })
    )
  ).map((text) => ({ kind: "JSON", body: Buffer.from(text) })),
  // Valid events, with text in every shape (emoji, RTL, combining marks, NUL, lone surrogates), ids in either case.
  fc.tuple(
    eventArb,
    fc.constantFrom("", "🙂", "\u202emirror", "e\u0301", "\u0000", "\ud800", "' OR 1=1 --"),
    fc.boolean()
  ).map(
    ([e, odd, upper]) => {
      const event = e.event === "ticket.created"
        ? { ...e, payload: { ...e.payload, title: `${e.payload.title}${odd}` } }
        : e.event === "message.sent"
        ? { ...e, payload: { ...e.payload, content: `${e.payload.content}${odd}` } }
        : e
      return {
        kind: upper ? "event (upper-case ids)" : "event",
        body: Buffer.from(
          JSON.stringify(
            event,
            (_, v) => (upper && typeof v === "string" && /^[0-9a-f-]{36}$/.test(v) ? v.toUpperCase() : v)
          )
        )
      }
    }
  )
)

const message = fc.tuple(
  route,
  body,
  properties,
  fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false))
)
  .map(([r, b, props, real]): Published => ({
    describe: `${b.kind}${real ? "" : " (no entity)"} → ${r.exchange || "(default)"}/${r.routingKey} ${
      JSON.stringify(props, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v))
    }`,
    route: r,
    body: b.body,
    options: { persistent: false, ...props },
    real
  }))

/** The valid event a body holds, if any. */
const eventOf = (bytes: Uint8Array) => {
  const decoded = decodeEventJson(Buffer.from(bytes).toString("utf8"))
  return Either.isRight(decoded) ? decoded.right : undefined
}

/** A batch whose valid events have distinct ids (random ones collide often: fast-check favours small values). */
const batch = fc.uniqueArray(message, {
  minLength: 1,
  maxLength: 12,
  selector: (m) => eventOf(m.body)?.eventId ?? m
})

// ----------------------------------------------------------------- checks ---

interface Outcome {
  readonly processed?: string
  readonly poison?: string
  /** A valid event the worker must not act on: the reason's pattern. */
  readonly invalid?: RegExp
}

/** Whether the ticket (with this owner) or the message (by this author, on this ticket) exists. */
const entityExists = (event: DomainEvent) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    (event.event === "message.sent"
      ? sql`SELECT 1 FROM messages WHERE id = ${event.payload.id} AND ticket_id = ${event.payload.ticketId}
              AND author_id = ${event.payload.authorId}`
      : sql`SELECT 1 FROM tickets WHERE id = ${event.payload.id} AND owner_id = ${event.payload.ownerId}`).pipe(
        Effect.map((rows) => rows.length > 0)
      )).pipe(Effect.orDie)

/**
 * What the worker must do with a message: its own decoder (the Schema) says
 * poison or not; then the queue it came on and the database decide.
 */
const outcomeOf = (m: Published): Effect.Effect<Outcome, never, SqlClient.SqlClient> => {
  const decoded = decodeEventJson(Buffer.from(m.body).toString("utf8"))
  // The decoder's reason as a header can carry it: cut to 1,000 units, well-formed.
  if (Either.isLeft(decoded)) return Effect.succeed({ poison: clip(decoded.left, 1000) })
  const event = decoded.right
  if (m.route.queue !== queueFor(event.event)) {
    return Effect.succeed({ invalid: new RegExp(`^Misrouted: a ${event.event} event arrived on ${m.route.queue}`) })
  }
  return Effect.map(
    entityExists(event),
    (exists): Outcome => (exists ? { processed: event.eventId } : { invalid: /^Invalid .* does not exist$/ })
  )
}

const drainDlq = Effect.gen(function*() {
  const { channel, dlq } = yield* BrokerWorld
  const got = yield* Effect.promise(async () => {
    const out: Array<GetMessage> = []
    for (;;) {
      const m = await channel.get(DLQ, { noAck: true })
      if (m === false) return out
      out.push(m)
    }
  })
  if (got.length > 0) yield* Ref.update(dlq, (all) => [...all, ...got])
})

const claimed = (eventIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventIds.length === 0
      ? Effect.succeed(new Set<string>())
      : sql<{ eventId: string }>`SELECT event_id FROM processed_events WHERE event_id IN ${sql.in(eventIds)}`.pipe(
        Effect.map((rows) => new Set(rows.map((r) => r.eventId)))
      )).pipe(Effect.orDie)

const publishAll = (messages: ReadonlyArray<Published>) =>
  Effect.flatMap(BrokerWorld, ({ channel }) =>
    Effect.promise(async () => {
      for (const m of messages) channel.publish(m.route.exchange, m.route.routingKey, Buffer.from(m.body), m.options)
      await channel.waitForConfirms()
    }))

/**
 * Publishes the batch and waits until each message is accounted for: the
 * decodable ones claimed in processed_events, the others in the DLQ (matched
 * by body) with a reason. Then a valid event published last must be processed.
 */
const runBatch = (messages: ReadonlyArray<Published>) =>
  Effect.gen(function*() {
    const { dlq } = yield* BrokerWorld
    const sentinel = ticketCreated()
    const events = messages.flatMap((m) => {
      const event = eventOf(m.body)
      return event === undefined ? [] : [{ event, real: m.real }]
    })
    yield* Effect.addFinalizer(() => deleteEventRows([...events.map((e) => e.event.eventId), sentinel.eventId]))
    yield* withEntities([...events.filter((e) => e.real).map((e) => e.event), sentinel])
    const expected = yield* Effect.forEach(messages, (m) => Effect.map(outcomeOf(m), (o) => ({ message: m, ...o })))
    const eventIds = expected.flatMap((e) => (e.processed !== undefined ? [e.processed] : []))
    yield* publishAll(messages)

    const poison = expected.filter((e) => e.poison !== undefined || e.invalid !== undefined)
    // A DLQ copy of a published message: same body, from the queue it was published to (two may share a body).
    const copyOf = (p: (typeof poison)[number]) => (m: GetMessage) =>
      m.content.equals(Buffer.from(p.message.body)) &&
      m.properties.headers?.[DLQ_HEADERS.queue] === p.message.route.queue
    const settled = Effect.gen(function*() {
      yield* drainDlq
      const done = yield* claimed(eventIds)
      const dead = yield* Ref.get(dlq)
      const unmatched = [...dead]
      const missing = poison.filter((p) => {
        const i = unmatched.findIndex(copyOf(p))
        if (i < 0) return true
        unmatched.splice(i, 1)
        return false
      })
      return eventIds.every((id) => done.has(id)) && missing.length === 0
    })
    yield* waitUntil(
      `every message processed or dead-lettered: ${expected.map((e) => e.message.describe).join("; ").slice(0, 2000)}`,
      settled,
      "30 seconds"
    )

    // Each poison message is in the DLQ once, with its reason; the valid ones are not there.
    const dead = yield* Ref.get(dlq)
    const used = new Set<GetMessage>()
    for (const p of poison) {
      const copy = dead.find((m) => !used.has(m) && copyOf(p)(m))!
      used.add(copy)
      const h = copy.properties.headers ?? {}
      const what = p.message.describe
      expect(h[DLQ_HEADERS.kind], what).toBe(p.poison !== undefined ? "poison" : "invalid")
      expect(typeof h[DLQ_HEADERS.reason] === "string" && h[DLQ_HEADERS.reason].length > 0, what).toBe(true)
      if (p.poison !== undefined) expect(String(h[DLQ_HEADERS.reason]), what).toBe(p.poison)
      else expect(String(h[DLQ_HEADERS.reason]), what).toMatch(p.invalid!)
      expect(h[DLQ_HEADERS.queue], what).toBe(p.message.route.queue)
      // Poison is never retried; an invalid event neither, but its retry header may say it was.
      if (p.poison !== undefined) expect(h[DLQ_HEADERS.attempts], what).toBe(1)
      else expect(Number(h[DLQ_HEADERS.attempts]), what).toBeGreaterThanOrEqual(1)
      expect(copy.properties.messageId, what).toBe(p.message.options.messageId)
      if (p.message.options.headers?.["x-fuzz"] !== undefined) {
        expect(h["x-fuzz"], what).toBe(p.message.options.headers["x-fuzz"])
      }
    }
    const strays = dead.filter((m) => !used.has(m))
    expect(
      strays.map((m) => `${m.properties.headers?.[DLQ_HEADERS.kind]}: ${m.properties.headers?.[DLQ_HEADERS.reason]}`)
    ).toEqual([])
    yield* Ref.set(dlq, [])
    expect(yield* claimed(eventIds)).toEqual(new Set(eventIds))

    // Still consuming.
    yield* publishAll([{
      describe: "sentinel",
      route: { exchange: EXCHANGE, routingKey: sentinel.event, queue: queueFor(sentinel.event) },
      body: Buffer.from(JSON.stringify(sentinel)),
      options: { persistent: true, messageId: sentinel.eventId },
      real: true
    }])
    yield* waitUntil(
      "a valid event published after the batch to be processed",
      Effect.map(claimed([sentinel.eventId]), (s) => s.size === 1)
    )
  }).pipe(Effect.scoped)

/** A message as the fuzzing makes them, for the fixed cases (a valid event's entity exists). */
const fixed = (describe: string, queue: string, body: string, options: Options.Publish = {}): Published => ({
  describe,
  route: { exchange: "", routingKey: queue, queue },
  body: Buffer.from(body),
  options,
  real: true
})

layer(WorldLive, { excludeTestServices: true, timeout: "120 seconds" })("broker fuzzing", (it) => {
  it.effect("cases fuzzing found: a deeply nested field (was a requeue loop), NUL in a title (was retried into the DLQ), an emoji where JSON breaks (its reason had a lone surrogate)", () => {
    const created = ticketCreated()
    return runBatch([
      fixed(
        "deep",
        "ticket.created.queue",
        `{"event":"ticket.created","eventId":${"[".repeat(5000)}${"]".repeat(5000)}}`
      ),
      fixed("deep event name", "message.sent.queue", `{"event":${"[".repeat(20000)}${"]".repeat(20000)}}`, {
        messageId: "deep"
      }),
      fixed(
        "NUL in the title",
        "ticket.created.queue",
        JSON.stringify({ ...created, payload: { ...created.payload, title: "nul\u0000here" } })
      ),
      fixed("huge retry count, no messageId", "ticket.created.queue", JSON.stringify(ticketCreated()), {
        headers: { "x-retry-count": Number.MAX_SAFE_INTEGER }
      }),
      fixed("negative and non-numeric retry counts", "ticket.created.queue", JSON.stringify(ticketCreated()), {
        messageId: "",
        headers: { "x-retry-count": -5, "opsdesk-retry-count": "abc" }
      }),
      fixed("an event on another event's queue", "ticket.updated.queue", JSON.stringify(ticketCreated()), {
        headers: { "x-retry-count": Number.MAX_SAFE_INTEGER }
      }),
      // V8 names the bad token by its first UTF-16 unit: the reason held half of the emoji.
      fixed("an emoji where the JSON breaks", "ticket.updated.queue", "\u{1F642} not JSON"),
      {
        ...fixed(
          "an event about a ticket that does not exist",
          "ticket.created.queue",
          JSON.stringify(ticketCreated())
        ),
        real: false
      }
    ])
  })

  it.effect.prop(
    "every message on every queue ends up processed or in the DLQ with its reason; the worker keeps consuming",
    { messages: batch },
    ({ messages }) => runBatch(messages),
    // Each run waits on the broker: no shrinking (a failure reports the whole batch), a generous bound.
    { timeout: 240_000, fastCheck: { numRuns: Number(process.env.FUZZ_RUNS ?? 40), endOnFailure: true } }
  )
})
