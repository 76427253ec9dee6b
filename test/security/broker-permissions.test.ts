/**
 * Finding 7, broker half: every process connected as guest/guest, with every
 * right on the broker. Now each has its own user (scripts/broker-users.sh),
 * limited to the exchanges and queues it uses; the test's vhost grants them
 * (test/support/Env.ts). Against the real RabbitMQ:
 * - the worker's user cannot publish to opsdesk.events (the broker closes the
 *   channel with 403 ACCESS_REFUSED) nor read or purge the DLQ, but can
 *   publish retries and DLQ copies and consume its queues;
 * - the API's user can publish events but cannot consume or purge the DLQ,
 *   nor publish to the retry exchange;
 * - the operator's user can read, purge and replay the DLQ;
 * - the real relay (as the API's user, on a fresh vhost: it declares the
 *   topology), the real worker (as the worker's) and the DLQ service (as the
 *   operator's, through OPS_AMQP_URL as the API process has it) do their work.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect, Exit, Layer, Scope } from "effect"
import { PublisherLive } from "../../src/Broker/Publisher.js"
import { declareTopology, DLQ, EXCHANGE, queueFor, RETRY_EXCHANGE, retryRoutingKey } from "../../src/Broker/Topology.js"
import { Dlq } from "../../src/Dlq/Dlq.js"
import { makeEvent, type TicketCreated } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import { appendEvent } from "../../src/Outbox/Outbox.js"
import { RelayLive } from "../../src/Outbox/Relay.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { FaultsLive } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import {
  brokerUserUrl,
  configFrom,
  countRows,
  deleteEventRows,
  InfraLive,
  unpublished,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

const TOPOLOGY = { queueType: "classic" as const, retryDelaysMs: [100] }

/** What one AMQP operation came to: done, or refused by the broker (the channel's close reason). */
type Outcome = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/** Runs `operation` on a fresh confirm channel of `connection`; the channel's error, if the broker closes it, is the outcome. */
const attempt = (
  connection: amqp.ChannelModel,
  operation: (channel: amqp.ConfirmChannel) => Promise<unknown>
) =>
  Effect.promise(async (): Promise<Outcome> => {
    const channel = await connection.createConfirmChannel()
    let closedWith: string | undefined
    channel.on("error", (e: Error) => (closedWith = e.message))
    try {
      await operation(channel)
      await channel.close()
      return { ok: true }
    } catch (e) {
      return { ok: false, reason: closedWith ?? (e instanceof Error ? e.message : String(e)) }
    }
  })

const publishTo = (exchange: string, routingKey: string) => (channel: amqp.ConfirmChannel) =>
  new Promise<void>((resolve, reject) =>
    channel.publish(
      exchange,
      routingKey,
      Buffer.from("{}"),
      { persistent: true },
      (err) => (err ? reject(err) : resolve())
    )
  )

const refused = (outcome: Outcome) => {
  expect(outcome.ok).toBe(false)
  if (!outcome.ok) expect(outcome.reason).toMatch(/403.*ACCESS.REFUSED/)
}

const connectAs = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(() => amqp.connect(url)),
    (connection) => Effect.promise(() => connection.close().catch(() => undefined))
  )

describe("broker users: least privilege", () => {
  it.live("each user may do what its process does, and nothing the others do", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("broker_permissions")
      const { channel: guest } = yield* withAmqp(url)
      yield* declareTopology(guest, TOPOLOGY)

      const worker = yield* connectAs(brokerUserUrl(url, "worker"))
      const api = yield* connectAs(brokerUserUrl(url, "api"))
      const ops = yield* connectAs(brokerUserUrl(url, "ops"))

      // The worker: no event publishing, no DLQ reading or purging...
      refused(yield* attempt(worker, publishTo(EXCHANGE, "ticket.created")))
      refused(yield* attempt(worker, (c) => c.get(DLQ)))
      refused(yield* attempt(worker, (c) => c.purgeQueue(DLQ)))
      // ...but its retries, its DLQ copies, and its queues.
      expect(yield* attempt(worker, publishTo(RETRY_EXCHANGE, retryRoutingKey(100, queueFor("ticket.created")))))
        .toEqual({ ok: true })
      expect(yield* attempt(worker, publishTo("", DLQ))).toEqual({ ok: true })
      expect(yield* attempt(worker, (c) => declareTopology(c, TOPOLOGY).pipe(Effect.runPromise))).toEqual({ ok: true })
      yield* Effect.promise(async () => {
        guest.publish(EXCHANGE, "message.sent", Buffer.from("{}"))
        await guest.waitForConfirms()
      })
      const consumed = yield* attempt(worker, (c) =>
        new Promise<void>((resolve, reject) => {
          c.consume(queueFor("message.sent"), (m) => {
            if (m === null) return reject(new Error("consumer cancelled"))
            c.ack(m)
            resolve()
          }).catch(reject)
        }))
      expect(consumed).toEqual({ ok: true })

      // The API: events in, nothing out of the DLQ, no retry copies.
      expect(yield* attempt(api, publishTo(EXCHANGE, "ticket.created"))).toEqual({ ok: true })
      refused(yield* attempt(api, (c) => c.consume(DLQ, () => undefined)))
      refused(yield* attempt(api, (c) => c.get(DLQ)))
      refused(yield* attempt(api, (c) => c.purgeQueue(DLQ)))
      refused(yield* attempt(api, publishTo(RETRY_EXCHANGE, retryRoutingKey(100, queueFor("ticket.created")))))

      // The operator: reads (the worker's copy is there), replays to the events exchange, purges.
      const read = yield* attempt(ops, async (c) => {
        const m = await c.get(DLQ, { noAck: false })
        if (m === false) throw new Error("the DLQ is empty")
        c.nack(m, false, true)
      })
      expect(read).toEqual({ ok: true })
      expect(yield* attempt(ops, publishTo(EXCHANGE, "ticket.created"))).toEqual({ ok: true })
      expect(yield* attempt(ops, (c) => c.purgeQueue(DLQ))).toEqual({ ok: true })
      refused(yield* attempt(ops, publishTo(RETRY_EXCHANGE, retryRoutingKey(100, queueFor("ticket.created")))))
    }).pipe(Effect.scoped))

  it.live(
    "the relay, the worker and the DLQ tools run as their own users, from a fresh vhost",
    () =>
      Effect.gen(function*() {
        const { url } = yield* withVhost("broker_users_e2e")
        const apiUrl = brokerUserUrl(url, "api")
        const workerUrl = brokerUserUrl(url, "worker")
        const opsUrl = brokerUserUrl(url, "ops")
        const settings = (amqpUrl: string, extra: Record<string, string | number> = {}) =>
          configFrom({
            AMQP_URL: amqpUrl,
            MAX_RETRIES: 1,
            RETRY_INITIAL_DELAY_MS: 100,
            RETRY_MAX_DELAY_MS: 100,
            METRICS_INTERVAL_MS: 600_000,
            AMQP_RECONNECT_INITIAL_MS: 100,
            AMQP_RECONNECT_MAX_MS: 500,
            OUTBOX_POLL_INTERVAL_MS: 100,
            ...extra
          })

        // A real ticket, so that the worker acts on its event.
        const sql = yield* SqlClient.SqlClient
        const ownerId = crypto.randomUUID()
        const ticketId = crypto.randomUUID()
        yield* sql`INSERT INTO users (id, username, password_hash, role)
        VALUES (${ownerId}, ${`perm_${ownerId.slice(0, 8)}`}, 'not-a-hash', 'customer')`
        yield* sql`INSERT INTO tickets (id, title, description, owner_id) VALUES (${ticketId}, 'permissions', 'e2e', ${ownerId})`
        const event = makeEvent<TicketCreated>("ticket.created", {
          id: ticketId,
          title: "permissions",
          description: "e2e",
          status: "open",
          priority: "medium",
          ownerId,
          assigneeId: null,
          createdAt: new Date().toISOString()
        })
        yield* Effect.addFinalizer(() =>
          deleteEventRows([event.eventId]).pipe(
            Effect.zipRight(sql`DELETE FROM tickets WHERE id = ${ticketId}`),
            Effect.zipRight(sql`DELETE FROM users WHERE id = ${ownerId}`),
            Effect.orDie
          )
        )

        // The relay first, on the fresh vhost: the API's user declares the whole topology.
        const relayScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(relayScope, Exit.void))
        yield* Layer.buildWithScope(RelayLive.pipe(Layer.provide(PublisherLive), Layer.provide(FatalLive)), relayScope)
          .pipe(Effect.withConfigProvider(settings(apiUrl)))
        const workerScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(workerScope, Exit.void))
        yield* Layer.buildWithScope(
          WorkerLive.pipe(
            Layer.provideMerge(
              Layer.mergeAll(EventStoreLive, TicketListCacheLive(), FaultsLive, WorkerMetricsLive, FatalLive)
            )
          ),
          workerScope
        ).pipe(Effect.withConfigProvider(settings(workerUrl)))

        yield* sql.withTransaction(appendEvent(event))
        yield* waitUntil(
          "the event processed once, through the relay and the worker",
          Effect.map(countRows("processed_events", [event.eventId]), (n) => n === 1)
        )
        // The relay marks its row only after the broker's confirm, which can come after the worker's claim.
        yield* waitUntil(
          "the event's outbox row marked published by the relay",
          Effect.map(unpublished([event.eventId]), (n) => n === 0)
        )

        // The DLQ tools: as the operator (the CLI's AMQP_URL, or the API's OPS_AMQP_URL) they purge the DLQ...
        const purge = (config: ReturnType<typeof settings>) =>
          Effect.scoped(
            Effect.flatMap(Dlq, (dlq) => dlq.purge()).pipe(
              Effect.provide(Dlq.Default),
              Effect.withConfigProvider(config),
              Effect.either
            )
          )
        expect(yield* purge(settings(opsUrl))).toMatchObject({ _tag: "Right" })
        expect(yield* purge(settings(apiUrl, { OPS_AMQP_URL: opsUrl }))).toMatchObject({ _tag: "Right" })
        // ...as the API's own user they cannot.
        const asApi = yield* purge(settings(apiUrl))
        expect(asApi._tag).toBe("Left")
        expect(JSON.stringify(asApi)).toMatch(/403|ACCESS.REFUSED/)
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    { timeout: 120_000 }
  )
})
