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
import { existsSync, readFileSync } from "node:fs"
import { promisify } from "node:util"
import { type DomainEvent, makeEvent, type MessageSent, type TicketCreated } from "../../src/Domain/Events.js"
import { appendEvent, RelayWake } from "../../src/Outbox/Outbox.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive, runMigrations } from "../../src/Store/Sql.js"
import * as BrokerAdmin from "./BrokerAdmin.js"
import { BROKER_USERS_DIR } from "./BrokerAdmin.js"

const exec = promisify(execFile)

export { AMQP_BASE } from "./BrokerAdmin.js"

const BROKER_USERS_SCRIPT = new URL("../../scripts/broker-users.sh", import.meta.url).pathname

/**
 * OpsDesk's broker users (scripts/broker-users.sh) as the processes use them: a
 * test's vhost grants them their permissions, so a test can run a process as one.
 */
export type BrokerUser = "api" | "worker" | "ops"
const BROKER_USER_NAMES: Record<BrokerUser, string> = {
  api: "opsdesk-api",
  worker: "opsdesk-worker",
  ops: "opsdesk-ops"
}

/** The user's password as the script resolves it: OPSDESK_AMQP_<USER>_PASSWORD, else the script's passwords file. */
const brokerPassword = (user: BrokerUser) => {
  const variable = `OPSDESK_AMQP_${user.toUpperCase()}_PASSWORD`
  const fromEnv = process.env[variable]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  const file = `${BROKER_USERS_DIR}/passwords.env`
  const line = existsSync(file)
    ? readFileSync(file, "utf8").split("\n").filter((l) => l.startsWith(`${variable}=`)).at(-1)
    : undefined
  if (line === undefined) throw new Error(`No password for ${BROKER_USER_NAMES[user]}: run scripts/broker-users.sh`)
  return line.slice(variable.length + 1)
}

/** The AMQP URL of `vhostUrl` (as `withVhost` gives it) as one of OpsDesk's broker users. */
export const brokerUserUrl = (vhostUrl: string, user: BrokerUser) => {
  const url = new URL(vhostUrl)
  url.username = BROKER_USER_NAMES[user]
  url.password = encodeURIComponent(brokerPassword(user))
  return url.toString()
}

/**
 * A fresh vhost for one test file; deleted (with everything in it) afterwards.
 * `guest` gets every right on it (the tests' own setup and checks), and OpsDesk's
 * broker users theirs, from the script, in the same import.
 */
export const withVhost = (name: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const vhost = `opsdesk_test_${name}_${process.pid}`
      yield* Effect.promise(() => BrokerAdmin.deleteVhost(vhost))
      const { stdout } = yield* Effect.tryPromise(() =>
        exec("bash", [BROKER_USERS_SCRIPT, "--print", "--no-env-files", vhost], {
          timeout: 30_000,
          env: { ...process.env, BROKER_USERS_DIR }
        })
      )
      const definitions = JSON.parse(stdout) as { permissions: Array<Record<string, string>> }
      definitions.permissions.push({ user: BrokerAdmin.ADMIN_USER, vhost, configure: ".*", write: ".*", read: ".*" })
      yield* Effect.tryPromise(() => BrokerAdmin.importDefinitions(definitions))
      return { vhost, url: BrokerAdmin.vhostUrl(vhost) }
    }),
    ({ vhost }) => Effect.promise(() => BrokerAdmin.deleteVhost(vhost))
  )

export const closeAllConnections = (vhost: string) =>
  Effect.tryPromise(() => BrokerAdmin.closeAllConnections(vhost, "test: connection closed under the worker"))

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
export const InfraLive = RelayWake.Default.pipe(
  Layer.provideMerge(Layer.effectDiscard(runMigrations).pipe(Layer.provideMerge(Layer.merge(PgLive, RedisLive))))
)

/** `events` appended in one transaction, then the relays woken once it committed, as the API's writes do. */
export const commitEvents = (events: ReadonlyArray<DomainEvent>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.forEach(events, (event) => appendEvent(event), { discard: true }))
    yield* Effect.flatMap(RelayWake, (relay) => relay.wake)
  })

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

/** How many of these events' outbox rows the relay has not marked published yet. */
export const unpublished = (eventIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventIds.length === 0
      ? Effect.succeed(0)
      : sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox
          WHERE published_at IS NULL AND event_id::text IN ${sql.in(eventIds)}`.pipe(Effect.map((rows) => rows[0]!.n)))

export const deleteEventRows = (eventIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    eventIds.length === 0
      ? Effect.void
      : Effect.all([
        sql`DELETE FROM processed_events WHERE event_id IN ${sql.in(eventIds)}`,
        sql`DELETE FROM notifications WHERE event_id IN ${sql.in(eventIds)}`,
        sql`DELETE FROM outbox WHERE event_id::text IN ${sql.in(eventIds)}`
      ], { discard: true })).pipe(Effect.orDie)
