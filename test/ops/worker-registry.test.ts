/**
 * The worker registry against the real PostgreSQL: a worker's heartbeat
 * writes its row and counters, the ops read (`readWorkers`) sums the live
 * rows and gives each worker's share, a stopped worker writes its final
 * counters and stops counting, a silent one is ignored after the TTL and
 * removed at ten times it. Each row names the RabbitMQ node its worker's
 * connection is on (none once it is closed). Rows made here are deleted
 * afterwards.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Metric, Redacted } from "effect"
import { openConnection } from "../../src/Broker/Amqp.js"
import { readWorkers } from "../../src/Ops/Workers.js"
import { WORKER_CONNECTION } from "../../src/Worker/Consumer.js"
import { processedTotal } from "../../src/Worker/Metrics.js"
import { WorkerRegistryLive } from "../../src/Worker/Registry.js"
import { AMQP_BASE } from "../support/BrokerAdmin.js"
import { configFrom, InfraLive, waitUntil } from "../support/Env.js"

const TTL = Duration.seconds(2)
const rowOf = (sql: SqlClient.SqlClient) =>
  sql<{ id: string; processed: string; stopped: boolean }>`
    SELECT id, processed::text AS processed, stopped_at IS NOT NULL AS stopped FROM workers WHERE pid = ${process.pid}`

it.live(
  "a worker's heartbeat is summed by the ops read, its final counters written at stop",
  () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const cleanUp = sql`DELETE FROM workers WHERE pid = ${process.pid} OR id LIKE 'test-registry-%'`
      yield* cleanUp
      // Even when an assertion fails: the fake live row's heartbeat is an hour ahead, and would count on the
      // dashboard of every test after this one.
      yield* Effect.addFinalizer(() => Effect.ignore(cleanUp))
      // Two rows of other (fake) workers: a live one, and one silent for longer than the TTL.
      yield* sql`INSERT INTO workers (id, host, pid, started_at, last_seen, processed, events, broker_node) VALUES
      ('test-registry-live', 'elsewhere', 1, now(), now() + interval '1 hour', 30,
       '[{"event":"ticket.created","processed":30,"failed":0,"retried":0,"duplicates":0,"poison":0,"timeSum":3,"timeCount":30,"lagSum":6,"lagCount":30}]',
       'amqp://10.0.0.2:5672'),
      ('test-registry-silent', 'elsewhere', 2, now(), now() - interval '5 seconds', 99, '[]', NULL),
      ('test-registry-ancient', 'elsewhere', 3, now(), now() - interval '1 minute', 7, '[]', NULL)`

      const registry = WorkerRegistryLive.pipe(
        Layer.provide(Layer.succeedContext(yield* Effect.context<SqlClient.SqlClient>()))
      )
      const before = (yield* readWorkers(TTL)).items.find((w) => w.id === "test-registry-live")
      expect(before?.processed).toBe(30)
      expect(before?.brokerNode).toBe("amqp://10.0.0.2:5672")

      // The worker's connection, as the consumer names it: the heartbeat reports its node, and none once it closes.
      const mine = Effect.map(readWorkers(TTL), (s) =>
        s.items.find((w) => w.host !== "elsewhere" && w.pid === process.pid))
      const node = new URL(AMQP_BASE)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(registry)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* openConnection(Redacted.make(AMQP_BASE), WORKER_CONNECTION)
          yield* waitUntil(
            "the heartbeat naming the node",
            Effect.map(mine, (w) =>
              w?.brokerNode === `amqp://${node.hostname}:${node.port || "5672"}`)
          )
        }))
        yield* waitUntil("the heartbeat after the connection closed", Effect.map(mine, (w) => w?.brokerNode === null))
        yield* waitUntil("the registry row", Effect.map(rowOf(sql), (rows) => rows.length === 1))
        // Ten events of this process; the next heartbeat carries them.
        yield* Metric.incrementBy(processedTotal.pipe(Metric.tagged("event", "ticket.created")), 10)
        const counted = yield* Effect.map(
          Metric.value(processedTotal.pipe(Metric.tagged("event", "ticket.created"))),
          (s) => s.count
        )
        yield* waitUntil(
          "the heartbeat with the counters",
          Effect.map(rowOf(sql), (rows) => Number(rows[0]?.processed ?? 0) >= counted)
        )
        const summary = yield* readWorkers(TTL)
        const ids = summary.items.map((w) => w.id)
        expect(ids).toContain("test-registry-live")
        expect(ids).not.toContain("test-registry-silent")
        const me = summary.items.find((w) => w.host !== "elsewhere" && w.pid === process.pid)!
        expect(me.processed).toBeGreaterThanOrEqual(10)
        const live = summary.items.filter((w) => w.host === "elsewhere" || w.pid === process.pid)
        const total = live.reduce((n, w) => n + w.processed, 0)
        expect(summary.totals.processed).toBeGreaterThanOrEqual(total)
        expect(me.share! + summary.items.find((w) => w.id === "test-registry-live")!.share!).toBeLessThanOrEqual(
          1.0000001
        )
        const created = summary.events.find((e) => e.event === "ticket.created")!
        expect(created.processed).toBeGreaterThanOrEqual(40)
        // A row ten times the TTL old is removed by a heartbeat (the worker's TTL here is 1 s: 10 s).
        yield* waitUntil(
          "the ancient row removed",
          Effect.map(
            sql<{ n: string }>`SELECT count(*)::text AS n FROM workers WHERE id = 'test-registry-ancient'`,
            (r) => r[0]?.n === "0"
          )
        )
      }))

      // Stopped: the final counters are written, and the row no longer counts.
      const [row] = yield* rowOf(sql)
      expect(row?.stopped).toBe(true)
      expect((yield* readWorkers(TTL)).items.some((w) => w.id === row?.id)).toBe(false)
    }).pipe(
      Effect.scoped,
      Effect.provide(InfraLive),
      Effect.withConfigProvider(configFrom({ WORKER_HEARTBEAT_MS: 100, WORKER_REGISTRY_TTL_MS: 1000 }))
    ),
  60_000
)
