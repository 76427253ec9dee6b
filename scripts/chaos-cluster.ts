/**
 * `npm run chaos:cluster`: OpsDesk on a three-node RabbitMQ cluster
 * (scripts/cluster.sh) with QUEUE_TYPE=quorum, losing the node that leads the
 * event queues (kill -9) in the middle of a load of writes, and getting it back.
 *
 * Runs the production bundles (`node dist/api.mjs`, `node dist/worker.mjs`) on
 * a database and a cluster vhost of their own, with AMQP_URL listing the three
 * nodes. Before the load it puts known dead letters in tickets.dlq; during it,
 * for each round, it finds the leader of ticket.created.queue, kills that node,
 * waits, and revives it. Then it waits for the queues to drain and checks: every
 * write answered 2xx (writes go to PostgreSQL, never to the broker), every event
 * processed (0 lost), no notification twice (0 doubled), the DLQ holding
 * exactly the known dead letters, and `opsdesk dlq list` run while the node is
 * down (a new process on the node list) listing every one of them. It prints a table and exits non-zero if a check
 * failed. A cluster already running is reused and left running; one it started
 * is stopped at the end.
 *
 * The load goes on until the last node killed is back, so it spans every
 * outage and revival (at least --writes writes).
 *
 *   npm run chaos:cluster -- [--writes 3000] [--rate 40] [--kills 3] [--down-s 10] [--db opsdesk_chaos_cluster]
 *
 * test/cluster/cluster.integration.test.ts runs a short version (one kill).
 */
import * as amqp from "amqplib"
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { promisify } from "node:util"
import pg from "pg"
import { type Answer, apiClient, field } from "./lib/http.js"
import { dropDatabase, freshDatabase, runNames } from "./lib/isolation.js"
import { options } from "./lib/options.js"
import {
  answers200,
  awaitReady,
  entryText,
  freePort,
  type LogEntry,
  type Proc,
  sleep,
  startProc,
  stopAll
} from "./lib/processes.js"

const exec = promisify(execFile)

// ---------------------------------------------------------------- options ---
const { flag, number: opt, string: optString } = options()
const WRITES = opt("writes", 3000)
const RATE = opt("rate", 40)
const KILLS = opt("kills", 3)
const DOWN_MS = opt("down-s", 10) * 1000
const CONCURRENCY = opt("concurrency", 8)
const DRAIN_TIMEOUT_MS = opt("drain-timeout-s", 180) * 1000
const DEAD_LETTERS = opt("dead-letters", 20)
// CHAOS_NAME_SUFFIX (or HARNESS_NAME_SUFFIX; `pid`) keeps two runs' databases and Redis databases apart.
const NAMES = runNames("CHAOS", "opsdesk_chaos_cluster", 14)
const DB_NAME = optString("db", NAMES.database)
if (!/^[a-z0-9_]+$/.test(DB_NAME)) throw new Error("--db must be a plain database name")

const PG_BASE = process.env.CHAOS_PG_BASE ?? "postgres://root@127.0.0.1:5432"
const DATABASE_URL = `${PG_BASE}/${DB_NAME}`
// A vhost of this run only: nothing to delete before, on a cluster that may be reused.
const VHOST = `${DB_NAME}_${process.pid}`
const REDIS_URL = process.env.CHAOS_REDIS_URL ?? `redis://127.0.0.1:6379/${NAMES.redisDb}`
const CLUSTER = "scripts/cluster.sh"
const EVENT_QUEUES = [
  "ticket.created.queue",
  "ticket.updated.queue",
  "ticket.status_changed.queue",
  "message.sent.queue"
]
const DLQ = "tickets.dlq"
const ADMIN_PASSWORD = "chaos-cluster-admin-password"
const BUNDLES = ["api.mjs", "worker.mjs", "opsdesk.mjs"]
// The production bundles; they find migrations/ beside dist/.
const BIN = "dist"

const log = (s: string) => process.stderr.write(`[chaos-cluster ${new Date().toISOString().slice(11, 19)}] ${s}\n`)

const cluster = async (...args: Array<string>) => {
  const { stdout } = await exec("bash", [CLUSTER, ...args], { timeout: 300_000 })
  return stdout.trim()
}

// -------------------------------------------------------------- processes ---
const stats = { duplicates: 0, failovers: new Map<string, Array<string>>() }

/** Counts redeliveries skipped and records each connection's node (JSON logs). */
const follow = (proc: string, _line: string, entry: LogEntry | undefined) => {
  if (entry === undefined) return
  const message = entryText(entry)
  if (message.includes("already processed, skipping")) stats.duplicates++
  const connected = /^RabbitMQ connected \((.+?)\) to (\S+)/.exec(message)
  if (connected) {
    const key = `${proc.split("#")[0]} ${connected[1]}`
    stats.failovers.set(key, [...(stats.failovers.get(key) ?? []), connected[2]!])
    log(`${proc}: ${message}`)
  }
}

// ------------------------------------------------------------------- HTTP ---
const { bases, http, login } = apiClient(30_000)

// ------------------------------------------------------------------- main ---
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const procs: Array<Proc> = []
let startedCluster = false

const main = async (): Promise<boolean> => {
  const started = Date.now()
  log(`writes=${WRITES} rate=${RATE}/s kills=${KILLS} down=${DOWN_MS / 1000}s`)
  if (!BUNDLES.every((b) => existsSync(`dist/${b}`))) {
    log("building dist/")
    await exec(process.execPath, ["scripts/build.mjs"], { timeout: 300_000 })
  }

  // The cluster: reuse a running one, else start it (and stop it at the end).
  const status = await cluster("status").catch(() => "")
  if ((status.match(/ running /g) ?? []).length === 3) {
    log("reusing the running cluster")
  } else {
    log("starting the cluster (scripts/cluster.sh start)")
    startedCluster = !/ running /.test(status)
    await cluster("start")
  }
  await cluster("ctl", "-q", "add_vhost", VHOST)
  await cluster("ctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
  const amqpUrl = await cluster("url", VHOST)
  const nodeUrls = amqpUrl.split(",")

  await freshDatabase(PG_BASE, DB_NAME)

  const common = {
    DATABASE_URL,
    AMQP_URL: amqpUrl,
    REDIS_URL,
    QUEUE_TYPE: "quorum",
    LOG_FORMAT: "json",
    AMQP_RECONNECT_INITIAL_MS: "200",
    AMQP_RECONNECT_MAX_MS: "2000",
    ADMIN_PASSWORD,
    JWT_SECRET: process.env.JWT_SECRET ?? "chaos-cluster-" + crypto.randomUUID() + crypto.randomUUID(),
    LOGIN_THROTTLE_PREFIX: `opsdesk-chaos-cluster:${process.pid}:login:`
  }
  const port = await freePort()
  bases.push(`http://127.0.0.1:${port}`)
  const api = startProc("api", {
    env: { ...common, PORT: String(port), LOG_LEVEL: "info" },
    cleanEnv: true,
    onLine: follow
  })
  procs.push(api)
  await awaitReady(api, 120_000, answers200(`${bases[0]}/ready`))
  const worker = startProc("worker", {
    env: { ...common, LOG_LEVEL: "info", LOG_EVENTS: "each", WORKER_METRICS_PORT: "0", METRICS_INTERVAL_MS: "600000" },
    cleanEnv: true,
    onLine: follow
  })
  procs.push(worker)
  await awaitReady(worker, 180_000)

  // Known dead letters, before anything else happens.
  const broker = await connectAny(nodeUrls)
  const setup = await broker.createConfirmChannel()
  const deadLetterIds = Array.from({ length: DEAD_LETTERS }, (_, i) => `chaos-cluster-dead-letter-${i}`)
  for (const id of deadLetterIds) {
    setup.sendToQueue(DLQ, Buffer.from(JSON.stringify({ note: "a known dead letter", id })), {
      persistent: true,
      messageId: id,
      headers: { "opsdesk-error-kind": "handler", "opsdesk-original-queue": "ticket.created.queue" }
    })
  }
  await setup.waitForConfirms()
  await broker.close().catch(() => undefined)

  // Users: an agent and two customers.
  const adminToken = await login("admin", ADMIN_PASSWORD)
  const actors: Array<{ id: string; token: string; role: string }> = []
  for (const role of ["agent", "customer", "customer"]) {
    const username = `cc-${role}-${actors.length}-${Date.now() % 100000}`
    const a = await http("POST", "/v1/users", adminToken, { username, password: "chaos-password-1", role })
    if (a.status !== 201) throw new Error(`create user: ${a.status} ${JSON.stringify(a.body)}`)
    actors.push({ id: String(field(a, "id")), role, token: await login(username, "chaos-password-1") })
  }
  const customers = actors.filter((a) => a.role === "customer")
  const agent = actors.find((a) => a.role === "agent")!

  // Kills, spread over the load (by writes issued): the leader of ticket.created.queue each time.
  let issued = 0
  const kills: Array<{ node: string; atWrite: number; revivedAfter: number }> = []
  const faultErrors: Array<string> = []
  const dlqListings: Array<string | undefined> = []
  let killsDone = false
  const killer = (async () => {
    for (let k = 0; k < KILLS; k++) {
      const due = Math.floor((WRITES * (k + 0.5)) / (KILLS + 0.5))
      while (issued < due) await sleep(100)
      try {
        const leader = await cluster("leader", "ticket.created.queue", VHOST)
        const atWrite = issued
        const at = Date.now()
        log(`write ${atWrite}: kill -9 of node ${leader} (leads ticket.created.queue)`)
        await cluster("kill", leader)
        const down = Date.now()
        // The DLQ tools, as an operator runs them, while the node is down: a new process on the node list.
        dlqListings.push(await listDlq(common, deadLetterIds))
        await sleep(Math.max(0, down + DOWN_MS - Date.now()))
        log(`reviving node ${leader}`)
        await cluster("revive", leader)
        kills.push({ node: leader, atWrite, revivedAfter: Date.now() - at })
        log(`node ${leader} is back after ${((Date.now() - at) / 1000).toFixed(1)}s`)
      } catch (e) {
        faultErrors.push(e instanceof Error ? e.message : String(e))
        log(`kill round ${k + 1} went wrong: ${faultErrors.at(-1)}`)
      }
    }
    killsDone = true
  })()

  // The load: tickets and messages at a steady rate; every write must answer 201.
  const writes = { ok: 0, failed: 0, statuses: new Map<string, number>(), latencies: [] as Array<number> }
  const tickets: Array<{ id: string; owner: (typeof actors)[number] }> = []
  const t0 = Date.now()
  const oneWrite = async (n: number) => {
    const begin = Date.now()
    let answer: Answer | undefined
    try {
      if (tickets.length < 5 || n % 3 !== 0) {
        const owner = customers[n % customers.length]!
        answer = await http("POST", "/v1/tickets", owner.token, {
          title: `Cluster ${n}`,
          description: "a node goes down",
          priority: "medium"
        })
        if (answer.status === 201) tickets.push({ id: String(field(answer, "id")), owner })
      } else {
        const t = tickets[n % tickets.length]!
        const author = n % 2 === 0 ? t.owner : agent
        answer = await http("POST", "/v1/messages", author.token, { ticketId: t.id, content: `message ${n}` })
      }
    } catch (e) {
      writes.statuses.set(String(e), (writes.statuses.get(String(e)) ?? 0) + 1)
    }
    writes.latencies.push(Date.now() - begin)
    if (answer?.status === 201) writes.ok++
    else {
      writes.failed++
      if (answer) writes.statuses.set(String(answer.status), (writes.statuses.get(String(answer.status)) ?? 0) + 1)
    }
  }
  // At least WRITES, and on until the last node killed is back: the load spans every outage and revival.
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (issued < WRITES || !killsDone) {
      const n = issued++
      await sleep(Math.max(0, t0 + (n * 1000) / RATE - Date.now()))
      await oneWrite(n)
    }
  }))
  const loadSeconds = (Date.now() - t0) / 1000
  log(`load done: ${writes.ok} of ${issued} writes answered 201 in ${loadSeconds.toFixed(1)}s`)
  await killer

  // Drain: every outbox row published and processed, the event queues empty.
  const db = new pg.Client({ connectionString: DATABASE_URL })
  await db.connect()
  const count = async (sql: string) => Number((await db.query<{ n: string }>(sql)).rows[0]!.n)
  const drainStart = Date.now()
  let drained = false
  for (;;) {
    const unpublished = await count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    const unprocessed = await count(
      "SELECT count(*) AS n FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id::text)"
    )
    if (unpublished === 0 && unprocessed === 0) {
      drained = true
      break
    }
    if (Date.now() - drainStart > DRAIN_TIMEOUT_MS) {
      log(`drain timed out: unpublished=${unpublished} unprocessed=${unprocessed}`)
      break
    }
    await sleep(250)
  }
  const drainSeconds = (Date.now() - drainStart) / 1000
  // Late duplicates (a redelivery after the last claim) would show up now: a short quiet period.
  await sleep(3000)

  const [books] = (await db.query<{ events: string; lost: string; doubled: string; notifications: string }>(`
    SELECT
      (SELECT count(*) FROM outbox) AS events,
      (SELECT count(*) FROM outbox o
        WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id::text)) AS lost,
      (SELECT count(*) FROM (SELECT 1 FROM notifications
        GROUP BY event_id, recipient_id, channel HAVING count(*) > 1) d) AS doubled,
      (SELECT count(*) FROM notifications) AS notifications`)).rows
  await db.end()

  // The broker: event queues empty, the DLQ holding the known dead letters, each once.
  const check = await connectAny(nodeUrls)
  const channel = await check.createChannel()
  let queued = 0
  for (const q of EVENT_QUEUES) queued += (await channel.checkQueue(q)).messageCount
  const dlq: Array<string> = []
  for (;;) {
    const m = await channel.get(DLQ, { noAck: false })
    if (m === false) break
    dlq.push(String(m.properties.messageId))
  }
  channel.nackAll(true)
  await check.close().catch(() => undefined)
  const found = deadLetterIds.filter((id) => dlq.includes(id)).length
  const extra = dlq.length - found

  const ok = (b: boolean) => (b ? "ok" : "FAILED")
  const lost = Number(books!.lost)
  const doubled = Number(books!.doubled)
  const checks: Array<[string, boolean]> = [
    ["every write answered 201", writes.failed === 0 && writes.ok === issued],
    ["every event processed (0 lost)", drained && lost === 0],
    ["no notification twice (0 doubled)", doubled === 0],
    ["event queues drained", queued === 0],
    ["DLQ intact (known dead letters all there, nothing else)", found === DEAD_LETTERS && extra === 0],
    [`${KILLS} leader node(s) killed and revived`, kills.length === KILLS && faultErrors.length === 0],
    [
      "opsdesk dlq list with a node down lists every known dead letter",
      dlqListings.length === KILLS && dlqListings.every((problem) => problem === undefined)
    ]
  ]
  const nodesSeen = [...stats.failovers.entries()].map(([k, v]) => `${k}: ${v.join(" -> ")}`)
  const rows: Array<[string, string]> = [
    ["date", new Date().toISOString().slice(0, 10)],
    ["cluster", "3 nodes, RabbitMQ 3.10, QUEUE_TYPE=quorum"],
    ["writes (POST answered 201)", `${writes.ok} of ${issued}`],
    ["writes failed", `${writes.failed}${writes.statuses.size ? ` (${[...writes.statuses].join(", ")})` : ""}`],
    [
      "write latency p50 / p99 / max",
      `${percentile(writes.latencies, 50)} / ${percentile(writes.latencies, 99)} / ${Math.max(...writes.latencies)} ms`
    ],
    ["load", `${loadSeconds.toFixed(1)} s, ${RATE}/s asked, ${(issued / loadSeconds).toFixed(1)}/s done`],
    [
      "leader kills",
      kills.map((k) => `node ${k.node} at write ${k.atWrite}, back after ${(k.revivedAfter / 1000).toFixed(0)} s`).join(
        "; "
      ) || "none"
    ],
    ["events", books!.events],
    ["lost", String(lost)],
    ["doubled", String(doubled)],
    ["notifications", books!.notifications],
    ["redeliveries skipped as duplicates", String(stats.duplicates)],
    ["drain after the load", `${drainSeconds.toFixed(1)} s`],
    ["DLQ: known dead letters found", `${found} of ${DEAD_LETTERS} (${extra} other)`],
    [
      "opsdesk dlq list, node down",
      dlqListings.map((problem) => problem ?? `all ${DEAD_LETTERS} listed`).join("; ") || "not run"
    ],
    ["connections (node per connect)", nodesSeen.join("; ")],
    ["total time", `${((Date.now() - started) / 1000).toFixed(0)} s`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length), ...checks.map(([k]) => k.length))
  console.log("\nOpsDesk on a RabbitMQ cluster, leader killed under load\n")
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`)
  console.log("")
  for (const [k, v] of checks) console.log(`${k.padEnd(width)}  ${ok(v)}`)
  const passed = checks.filter(([, v]) => v).length
  console.log(`\n${passed} passed, ${checks.length - passed} failed`)
  if (passed < checks.length) {
    for (const p of procs) log(`${p.name}'s last output:\n${p.recent()}`)
    for (const e of faultErrors) log(`fault error: ${e}`)
  }
  return passed === checks.length
}

/**
 * `opsdesk dlq list --json` (the production bundle) on the node list; undefined
 * when it listed every known dead letter, else what went wrong.
 */
const listDlq = async (
  env: Readonly<Record<string, string>>,
  ids: ReadonlyArray<string>
): Promise<string | undefined> => {
  try {
    const { stdout } = await exec(process.execPath, [`${BIN}/opsdesk.mjs`, "dlq", "list", "--json", "--limit", "500"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env, LOG_LEVEL: "error" },
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024
    })
    const listed = new Set((JSON.parse(stdout) as Array<{ messageId: string | null }>).map((e) => e.messageId))
    const missing = ids.filter((id) => !listed.has(id))
    return missing.length === 0 ? undefined : `${missing.length} of ${ids.length} missing`
  } catch (e) {
    return `failed: ${e instanceof Error ? e.message.slice(0, 300) : String(e)}`
  }
}

/** A connection to the first node that answers. */
const connectAny = async (urls: ReadonlyArray<string>) => {
  let last: unknown
  for (let round = 0; round < 20; round++) {
    for (const url of urls) {
      try {
        return await amqp.connect(url)
      } catch (e) {
        last = e
      }
    }
    await sleep(500)
  }
  throw last
}

const cleanup = async () => {
  await stopAll(procs)
  const stopCluster = startedCluster && !flag("keep-cluster")
  // A cluster that is stopped takes its data along.
  if (!stopCluster) await cluster("ctl", "-q", "delete_vhost", VHOST).catch(() => "")
  await dropDatabase(PG_BASE, DB_NAME).catch(() => undefined)
  if (stopCluster) {
    log("stopping the cluster it started")
    await cluster("stop").catch((e) => log(`cluster stop: ${String(e)}`))
  }
}

main().then(
  async (passed) => {
    await cleanup()
    process.exit(passed ? 0 : 1)
  },
  async (e: unknown) => {
    log(`failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
    for (const p of procs) log(`${p.name}'s last output:\n${p.recent()}`)
    await cleanup().catch(() => undefined)
    process.exit(2)
  }
)
