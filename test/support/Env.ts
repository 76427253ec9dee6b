/**
 * Shared pieces for integration tests against the real PostgreSQL, Redis and
 * RabbitMQ. Each test file gets its own RabbitMQ vhost (created and deleted
 * around the file), so tests never see a developer's running worker or each
 * other's messages; PostgreSQL rows are scoped by the event ids a test makes.
 */
import { SqlClient } from "@effect/sql"
import * as amqp from "amqplib"
import { ConfigProvider, type Duration, Effect, Layer, Schedule } from "effect"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { makeEvent, type MessageSent, type TicketCreated } from "../../src/Domain/Events.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive, runMigrations } from "../../src/Store/Sql.js"

const exec = promisify(execFile)

export const AMQP_BASE = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672"

const rabbitmqctl = (...args: Array<string>) =>
  Effect.tryPromise(() => exec("rabbitmqctl", args, { timeout: 30_000 })).pipe(Effect.asVoid)

/** A fresh vhost for one test file; deleted (with everything in it) afterwards. */
export const withVhost = (name: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const vhost = `opsdesk_test_${name}_${process.pid}`
      yield* rabbitmqctl("delete_vhost", vhost).pipe(Effect.ignore)
      yield* rabbitmqctl("add_vhost", vhost)
      yield* rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
      return { vhost, url: `${AMQP_BASE.replace(/\/$/, "")}/${vhost}` }
    }),
    ({ vhost }) => rabbitmqctl("delete_vhost", vhost).pipe(Effect.ignore)
  )

export const closeAllConnections = (vhost: string) =>
  rabbitmqctl("close_all_connections", "-p", vhost, "test: connection closed under the worker")

/** One AMQP connection + confirm channel per test file (the broker here may have few file descriptors). */
export const withAmqp = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connection = await amqp.connect(url)
      const channel = await connection.createConfirmChannel()
      return { connection, channel }
    }),
    ({ connection }) => Effect.promise(() => connection.close().catch(() => undefined))
  )

/** PostgreSQL (migrated) and Redis, from DATABASE_URL / REDIS_URL or the localhost defaults. */
export const InfraLive = Layer.effectDiscard(runMigrations).pipe(Layer.provideMerge(Layer.merge(PgLive, RedisLive)))

export const configFrom = (values: Record<string, string | number>) =>
  ConfigProvider.fromMap(new Map(Object.entries(values).map(([k, v]) => [k, String(v)]))).pipe(
    ConfigProvider.orElse(() => ConfigProvider.fromEnv())
  )

/** Polls `check` until it returns true; fails with `what` after `timeout`. */
export const waitUntil = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "20 seconds"
) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (ok) => ok }),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`Timed out waiting for: ${what}`) })
  )

export const ticketCreated = (ownerId: string = crypto.randomUUID()) =>
  makeEvent<TicketCreated>("ticket.created", {
    id: crypto.randomUUID(),
    title: "Integration ticket",
    description: "from a test",
    status: "open",
    priority: "medium",
    ownerId,
    assigneeId: null,
    createdAt: new Date().toISOString()
  })

export const messageSent = (ticketId: string = crypto.randomUUID(), authorId: string = crypto.randomUUID()) =>
  makeEvent<MessageSent>("message.sent", {
    id: crypto.randomUUID(),
    ticketId,
    authorId,
    content: "hello",
    sentAt: new Date().toISOString()
  })

export const countRows = (table: "processed_events" | "notifications", eventIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventIds.length === 0
      ? Effect.succeed(0)
      : sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql(table)} WHERE event_id IN ${sql.in(eventIds)}`.pipe(
        Effect.map((rows) => Number(rows[0]!.n))
      ))

export const deleteEventRows = (eventIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventIds.length === 0
      ? Effect.void
      : Effect.all([
        sql`DELETE FROM processed_events WHERE event_id IN ${sql.in(eventIds)}`,
        sql`DELETE FROM notifications WHERE event_id IN ${sql.in(eventIds)}`,
        sql`DELETE FROM outbox WHERE event_id::text IN ${sql.in(eventIds)}`
      ], { discard: true })).pipe(Effect.orDie)
