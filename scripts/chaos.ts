/**
 * `npm run chaos`: fault injection under load, then the books.
 *
 * Runs the real API and worker as child processes on their own stores,
 * drives a steady load of writes through the HTTP API, and meanwhile injects,
 * each at a random moment: SIGKILL of the worker (3x, restarted), SIGTERM of
 * the worker (restarted), RabbitMQ stopped for a while (stop_app/start_app),
 * a PostgreSQL restart, Redis stopped for a while, and a burst of poison
 * messages published straight to each queue. Notifications go out for real
 * (issue 13): an SMTP server and a Standard Webhooks receiver started here
 * (scripts/lib/receivers.ts) refuse, fail, hang and drop connections at
 * random, every user has an email address and a webhook subscription takes
 * every event. When the queues and the deliveries have drained it checks,
 * from the database, the broker and the receivers, that nothing was lost or
 * doubled, that every delivery reached its receiver or failed with its reason,
 * and that a delivery received twice had a crash (a worker stop, the
 * database's restart) between its receipts; prints a table, and exits
 * non-zero if any check failed.
 *
 * Its database, vhost and Redis database are `opsdesk_chaos`,
 * `opsdesk_chaos` and 15 (per mode, see below), wiped at start: set
 * CHAOS_NAME_SUFFIX=x (or `pid`) to run on `opsdesk_chaos_x` and a Redis
 * database of its own next to another run (scripts/lib/isolation.ts).
 *
 *   npm run chaos -- [--writes 2000] [--outage-s 10] [--concurrency 8] [--rate 60]
 *
 * `--scale` runs the scale-out instead: 2 APIs (their relays off), 2
 * standalone relays and 3 workers on their own database and vhost, a steady
 * load spread over both APIs, a relay and two workers killed and restarted on
 * the way (nothing shared is stopped), then the same books plus each worker's
 * share of the events (from the worker registry). `--drain` measures PREFETCH:
 * a backlog is written with no worker running, then `--workers N` workers
 * (PREFETCH `--prefetch P`) start at once; it prints the drain rate and each
 * worker's share.
 *
 *   npm run chaos -- --scale [--writes 2000] [--rate 60] [--prefetch 1000]
 *   npm run chaos -- --drain [--writes 3000] [--workers 3] [--prefetch 1000]
 *
 * The processes run as the production bundles (`node dist/*.mjs`, built first
 * unless `--no-build`): under tsx each start compiled the sources again, which
 * took 10-20 s of CPU on a loaded machine.
 *
 * It stops RabbitMQ, PostgreSQL and Redis for everything on the machine: run it
 * where nothing else needs them for a minute. Commands can be overridden with
 * CHAOS_PG_RESTART, CHAOS_REDIS_STOP, CHAOS_REDIS_START, CHAOS_RABBIT_STOP and
 * CHAOS_RABBIT_START.
 */
import * as amqp from "amqplib"
import { execFile } from "node:child_process"
import { readdirSync } from "node:fs"
import { connect } from "node:net"
import { promisify } from "node:util"
import pg from "pg"
import { type Answer, apiClient, field } from "./lib/http.js"
import { dropStores, freshStores, runNames } from "./lib/isolation.js"
import { options } from "./lib/options.js"
import {
  answers200,
  awaitReady,
  type Bundle,
  entryText,
  freePort,
  type LogEntry,
  type Proc,
  running,
  sleep,
  startProc as start
} from "./lib/processes.js"
import {
  type ChaosReceiver,
  explainDoubles,
  type FaultRates,
  seenTwice,
  startSmtpReceiver,
  startWebhookReceiver
} from "./lib/receivers.js"

const exec = promisify(execFile)

// ---------------------------------------------------------------- options ---
const { flag, number: opt } = options()
const WRITES = opt("writes", 2000)
const OUTAGE_MS = opt("outage-s", 10) * 1000
const CONCURRENCY = opt("concurrency", 8)
const RATE = opt("rate", 60) // writes per second, steady
const DRAIN_TIMEOUT_MS = opt("drain-timeout-s", 180) * 1000
const MODE: "faults" | "scale" | "drain" = flag("scale") ? "scale" : flag("drain") ? "drain" : "faults"
const PREFETCH = flag("prefetch") ? String(opt("prefetch", 1000)) : undefined
const DRAIN_WORKERS = opt("workers", 3)

// Each mode has its own database, vhost and Redis database: a scale run next to a fault run touches nothing of it.
// CHAOS_NAME_SUFFIX (or HARNESS_NAME_SUFFIX; `pid` for this process's id) keeps two runs of one mode apart.
const NAMES = runNames(
  "CHAOS",
  MODE === "faults" ? "opsdesk_chaos" : `opsdesk_chaos_${MODE}`,
  MODE === "faults" ? 15 : MODE === "scale" ? 13 : 12
)
const PG_BASE = process.env.CHAOS_PG_BASE ?? "postgres://opsdesk:opsdesk@127.0.0.1:5432"
const DATABASE_URL = `${PG_BASE}/${NAMES.database}`
const VHOST = NAMES.vhost

/**
 * The faults mode stops RabbitMQ and Redis, so it runs them itself: a lone RabbitMQ node of its own
 * (scripts/cluster.sh with CLUSTER_SIZE=1, its own name, ports and data dir) and a Redis server on its own
 * port; the machine's broker and Redis, which other processes use, are never stopped. CHAOS_AMQP_BASE /
 * CHAOS_REDIS_URL (with the CHAOS_*_STOP/START commands) point it at services of your choosing instead.
 */
const OWN_BROKER = MODE === "faults" && process.env.CHAOS_AMQP_BASE === undefined
const OWN_REDIS = MODE === "faults" && process.env.CHAOS_REDIS_URL === undefined
const OWN_BROKER_PORT = opt("broker-port", 5689)
const OWN_REDIS_PORT = opt("redis-port", 6389)
// Named by its port: runs given other ports never share a node, a data dir or a clean-up.
const CLUSTER_ENV = [
  `CLUSTER_DIR=${JSON.stringify(`${process.cwd()}/.chaos-broker-${OWN_BROKER_PORT}`)}`,
  `CLUSTER_NAME=odchaos${OWN_BROKER_PORT}-`,
  "CLUSTER_SIZE=1",
  `CLUSTER_AMQP_BASE_PORT=${OWN_BROKER_PORT - 1}`,
  `CLUSTER_DIST_BASE_PORT=${20000 + OWN_BROKER_PORT - 1}`
].join(" ")
const cluster = (args: string) => `${CLUSTER_ENV} bash scripts/cluster.sh ${args}`
/** What this run started itself (and so stops at the end); not set when it refused to start. */
const ownServices = { broker: false, redis: false }
const portTaken = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })
/** rabbitmqctl on the broker this run uses. */
const RABBITMQCTL = OWN_BROKER ? cluster("node-ctl 1") : "rabbitmqctl"
const AMQP_URL = `${
  process.env.CHAOS_AMQP_BASE ??
    (OWN_BROKER ? `amqp://guest:guest@127.0.0.1:${OWN_BROKER_PORT}` : "amqp://guest:guest@127.0.0.1:5672")
}/${VHOST}`
const REDIS_URL = process.env.CHAOS_REDIS_URL ??
  (OWN_REDIS ? `redis://127.0.0.1:${OWN_REDIS_PORT}/0` : `redis://127.0.0.1:6379/${NAMES.redisDb}`)
const QUEUES = ["ticket.created.queue", "ticket.updated.queue", "ticket.status_changed.queue", "message.sent.queue"]
const DLQ = "tickets.dlq"

const log = (s: string) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${s}\n`)

const sh = async (command: string) => {
  const { stdout } = await exec("bash", ["-c", command], { timeout: 120_000 })
  return stdout.trim()
}

const pgVersion = () => readdirSync("/etc/postgresql")[0]
const commands = {
  pgRestart: process.env.CHAOS_PG_RESTART ?? `pg_ctlcluster --skip-systemctl-redirect ${pgVersion()} main restart`,
  redisStop: process.env.CHAOS_REDIS_STOP ?? `redis-cli -h 127.0.0.1 -p ${OWN_REDIS_PORT} shutdown nosave || true`,
  redisStart: process.env.CHAOS_REDIS_START ??
    `redis-server --daemonize yes --bind 127.0.0.1 --port ${OWN_REDIS_PORT} --save '' --appendonly no --dir /tmp --logfile /dev/null`,
  rabbitStop: process.env.CHAOS_RABBIT_STOP ?? `${RABBITMQCTL} -q stop_app`,
  rabbitStart: process.env.CHAOS_RABBIT_START ?? `${RABBITMQCTL} -q start_app && ${RABBITMQCTL} -q await_startup`
}

// -------------------------------------------------------------- processes ---
const stats = { duplicates: 0, retried: 0, workerStarts: 0, stuckStarts: 0 }

/** Counts what the worker reports (JSON logs), echoes warnings and errors and anything on stderr. */
const follow = (proc: string, line: string, entry: LogEntry | undefined, stream: "stdout" | "stderr") => {
  if (stream === "stderr") {
    if (line.trim().length > 0) log(`${proc} stderr: ${line.slice(0, 500)}`)
    return
  }
  if (entry === undefined) {
    if (line.trim().length > 0 && !line.startsWith("🛑")) log(`${proc}: ${line.slice(0, 300)}`)
    return
  }
  const message = entryText(entry)
  if (message.includes("already processed, skipping")) stats.duplicates++
  if (message.startsWith("🔄 Retrying")) stats.retried++
  const level = entry.logLevel ?? ""
  const noisy = message.startsWith("☠️") || message.startsWith("❌") || message.startsWith("🔄") ||
    message.includes("Redis connection error")
  if (["WARN", "ERROR", "FATAL"].includes(level) && !noisy && !/ failed$/.test(message)) {
    log(`${proc} ${level}: ${message.slice(0, 300)}`)
  }
}
const startProc = (bundle: Bundle, env: Record<string, string>): Proc => start(bundle, { env, onLine: follow })

// ------------------------------------------------------------------- HTTP ---
const { bases: BASES, http, login } = apiClient()

interface Actor {
  readonly id: string
  readonly username: string
  readonly role: "admin" | "agent" | "customer"
  readonly password: string
  token: string
}

// ------------------------------------------------------------------- load ---
interface Ticket {
  readonly id: string
  readonly ownerId: string
  status: "open" | "in_progress" | "resolved" | "closed"
}
const NEXT: Record<Ticket["status"], Ticket["status"]> = {
  open: "in_progress",
  in_progress: "resolved",
  resolved: "closed",
  closed: "open"
}

const writes = { ok: 0, retriedWrites: 0, failed: 0, attempts: 0, statuses: new Map<number, number>() }

/** A write, retried while the API answers 5xx or not at all (a PostgreSQL restart); a 4xx is final. */
const write = async (f: () => Promise<Answer>): Promise<Answer | undefined> => {
  for (let attempt = 0; attempt < 60; attempt++) {
    writes.attempts++
    let a: Answer
    try {
      a = await f()
    } catch {
      a = { status: 0, body: null }
    }
    if (a.status >= 200 && a.status < 300) {
      writes.ok++
      if (attempt > 0) writes.retriedWrites++
      return a
    }
    writes.statuses.set(a.status, (writes.statuses.get(a.status) ?? 0) + 1)
    if (a.status >= 400 && a.status < 500) return a
    await sleep(500)
  }
  writes.failed++
  return undefined
}

// ---------------------------------------------------------- notifications ---
/**
 * Faults mode (issue 13): an SMTP server and a webhook receiver that, per
 * request, refuse for good, fail for now, hang or drop the connection. The
 * senders' timeouts are short so a hang costs seconds, and the dispatcher's
 * lease outlasts a claim's tries (its per-send bound is a quarter of the
 * lease, above the SMTP client's three step timeouts), so the same delivery is
 * only sent again after a sender died or gave up waiting for an answer the
 * receiver had given (a late answer on this loaded machine): the table counts
 * both. More deliveries in flight than the defaults, so that hangs do not make
 * the drain outlast its timeout.
 */
const SMTP_RATES: FaultRates = { permanent: 0.02, fail: 0.1, hang: 0.04, drop: 0.04 }
const WEBHOOK_RATES: FaultRates = { permanent: 0.01, fail: 0.1, hang: 0.04, drop: 0.04 }
const WEBHOOK_EVENTS = ["ticket.created", "ticket.updated", "ticket.status_changed", "message.sent"]
const receivers: { smtp?: ChaosReceiver; webhook?: ChaosReceiver & { readonly setSecret: (s: string) => void } } = {}
let notificationEnv: Record<string, string> = {}
const startReceivers = async () => {
  receivers.smtp = await startSmtpReceiver(SMTP_RATES)
  receivers.webhook = await startWebhookReceiver(WEBHOOK_RATES)
  notificationEnv = {
    SMTP_URL: receivers.smtp.url,
    SMTP_TIMEOUT_MS: "2500",
    WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
    WEBHOOK_TIMEOUT_MS: "3000",
    // Random failures must not disable the subscription (a real receiver this flaky would be).
    WEBHOOK_DISABLE_AFTER: "1000",
    DISPATCH_LEASE_MS: "32000",
    DISPATCH_POLL_INTERVAL_MS: "1000",
    DISPATCH_EMAIL_CONCURRENCY: "8",
    DISPATCH_PER_SUBSCRIPTION: "8"
  }
}

/**
 * When a sender could have died between a send and its record: each stop of
 * the worker (which runs the dispatcher) and the database's restart. A key
 * received twice must have one of these between its two receipts. A worker's
 * window lasts from the signal until its successor starts: the receiver here
 * stamps a request when it reads it, so one the dead worker wrote just before
 * the signal can be stamped after it, and in faults mode nothing else sends.
 */
interface Crash {
  readonly name: string
  readonly start: number
  end: number
}
const crashes: Array<Crash> = []
const crashed = (name: string) => {
  const crash: Crash = { name, start: Date.now(), end: Date.now() }
  crashes.push(crash)
  return () => void (crash.end = Date.now())
}

// ----------------------------------------------------------------- faults ---
interface Fault {
  readonly name: string
  readonly run: () => Promise<void>
}
const injected: Array<string> = []
const faultErrors: Array<string> = []

let worker: Proc
const workerEnv = () => ({
  DATABASE_URL,
  AMQP_URL,
  REDIS_URL,
  LOG_FORMAT: "json",
  LOG_LEVEL: "info",
  METRICS_INTERVAL_MS: "600000",
  AMQP_RECONNECT_MAX_MS: "2000",
  // No fixed port: other test files may run a worker at the same time.
  WORKER_METRICS_PORT: "0",
  // The registry's counters (each worker's share) fresh to the second.
  WORKER_HEARTBEAT_MS: "1000",
  // A killed worker's row is kept for ten times this: the share table still shows it at the end.
  WORKER_REGISTRY_TTL_MS: "60000",
  ...(PREFETCH === undefined ? {} : { PREFETCH }),
  ...notificationEnv
})
const restartWorker = () => {
  stats.workerStarts++
  worker = startProc("worker", workerEnv())
}

/**
 * How long a process may take to be ready before the harness reports it stuck
 * (with its last output). Generous: on this 2-core machine shared by several
 * test runs the load average reaches 20+, and a start then takes well over a
 * minute of wall time without anything being wrong.
 */
const READY_TIMEOUT_MS = opt("ready-timeout-s", 180) * 1000

/**
 * Waits until the current worker consumes. A start that exits or hangs instead
 * is reported with the worker's last output and replaced, as a supervisor would
 * (the books at the end still have to balance); the report counts such starts.
 */
const workerReady = async (): Promise<void> => {
  for (;;) {
    const current = worker
    const outcome = await Promise.race([
      current.ready.then(() => "ready" as const),
      current.exited.then((code) => `exited with code ${code}` as const),
      sleep(READY_TIMEOUT_MS).then(() => `not consuming after ${READY_TIMEOUT_MS / 1000}s` as const)
    ])
    if (outcome === "ready") return
    stats.stuckStarts++
    log(`worker start ${outcome}; its last output:\n${current.recent()}`)
    const replaced = crashed("worker start replaced (SIGKILL)")
    current.child.kill("SIGKILL")
    await current.exited
    replaced()
    restartWorker()
  }
}

let poisonCount = 0
const poisonBurst = async () => {
  // A connect to a broker that just restarted can hang in its handshake: bounded, and tried again.
  let connection: amqp.ChannelModel | undefined
  for (let attempt = 0; connection === undefined; attempt++) {
    try {
      connection = await amqp.connect(AMQP_URL, { timeout: 10_000 })
    } catch (e) {
      if (attempt >= 5) throw e
      await sleep(2000)
    }
  }
  const channel = await connection.createConfirmChannel()
  const bodies = [
    Buffer.from([0xff, 0x00, 0x13, 0x37, 0xfe]),
    Buffer.from("{ this is not json"),
    Buffer.from(JSON.stringify({ event: "ticket.created", eventId: "not-a-uuid", payload: { id: 42 } })),
    Buffer.from(
      JSON.stringify({
        event: "no.such.event",
        eventId: crypto.randomUUID(),
        occurredAt: new Date().toISOString(),
        payload: {}
      })
    )
  ]
  for (const queue of QUEUES) {
    for (const [i, body] of bodies.entries()) {
      // Odd headers too: a negative, a huge and a non-numeric retry count, and no messageId.
      const headers = [{ "x-retry-count": -3 }, { "x-retry-count": 1e12 }, { "opsdesk-retry-count": "many" }, {}][i]
      channel.sendToQueue(queue, body, { persistent: true, headers })
      poisonCount++
    }
  }
  await channel.waitForConfirms()
  await connection.close()
}

/** Scale mode: the processes of each kind, replaced in place when a fault restarts one. */
const fleet = { workers: [] as Array<Proc>, relays: [] as Array<Proc>, apis: [] as Array<Proc> }
const relayEnv = () => ({
  DATABASE_URL,
  AMQP_URL,
  LOG_FORMAT: "json",
  LOG_LEVEL: "info",
  AMQP_RECONNECT_MAX_MS: "2000",
  RELAY_METRICS_PORT: "0"
})

/** Kills `fleet[kind][i]` with `signal`, waits for its exit, starts a new one in its place and waits until it is ready. */
const replace = async (kind: "workers" | "relays", i: number, signal: NodeJS.Signals) => {
  const old = fleet[kind][i]!
  await awaitReady(old, READY_TIMEOUT_MS)
  old.child.kill(signal)
  const code = await old.exited
  if (signal === "SIGTERM" && code !== 0) throw new Error(`${old.name} exited with ${code} on SIGTERM`)
  const next = kind === "workers" ? startProc("worker", workerEnv()) : startProc("relay", relayEnv())
  if (kind === "workers") stats.workerStarts++
  // In the fleet at once, so that it is stopped (and its counters read) even if it never gets ready.
  fleet[kind][i] = next
  await awaitReady(next, READY_TIMEOUT_MS)
}

const scaleFaults = (): Array<Fault> => [
  { name: "relay SIGKILL", run: () => replace("relays", 0, "SIGKILL") },
  { name: "worker SIGKILL", run: () => replace("workers", 1, "SIGKILL") },
  { name: "worker SIGTERM", run: () => replace("workers", 2, "SIGTERM") }
]

const faults = (): Array<Fault> => [
  ...[1, 2, 3].map((n): Fault => ({
    name: `worker SIGKILL #${n}`,
    run: async () => {
      await workerReady()
      const killed = crashed("worker SIGKILL")
      worker.child.kill("SIGKILL")
      await worker.exited
      await sleep(300)
      killed()
      restartWorker()
    }
  })),
  {
    name: "worker SIGTERM",
    run: async () => {
      // A signal before the runtime installed its handlers would just kill it: wait until it consumes.
      await workerReady()
      const stopped = crashed("worker SIGTERM")
      worker.child.kill("SIGTERM")
      const code = await worker.exited
      stopped()
      if (code !== 0) throw new Error(`worker exited with ${code} on SIGTERM`)
      restartWorker()
    }
  },
  {
    name: `RabbitMQ stopped ${OUTAGE_MS / 1000}s`,
    run: async () => {
      await sh(commands.rabbitStop)
      await sleep(OUTAGE_MS)
      await sh(commands.rabbitStart)
    }
  },
  {
    name: "PostgreSQL restarted",
    run: async () => {
      const done = crashed("PostgreSQL restart")
      await sh(commands.pgRestart)
      done()
    }
  },
  {
    name: `Redis stopped ${OUTAGE_MS / 1000}s`,
    run: async () => {
      await sh(commands.redisStop)
      await sleep(OUTAGE_MS)
      await sh(commands.redisStart)
    }
  },
  { name: "poison burst", run: poisonBurst }
]

// ------------------------------------------------------- delivery books ---
interface DeliveryBooks {
  readonly rows: Array<[string, string]>
  readonly checks: Array<[string, boolean]>
}

/**
 * Every delivery row against what its receiver accepted: delivered ones were
 * received (their key seen), failed ones say why, none is left pending; every
 * email notification and every event has its delivery; a key received twice
 * has a crash between its two receipts.
 */
const deliveryBooks = async (db: pg.Client): Promise<DeliveryBooks> => {
  const smtp = receivers.smtp!
  const webhook = receivers.webhook!
  const tallyOf = (channel: string) => (channel === "email" ? smtp.tally : webhook.tally)
  const { rows } = await db.query<{ key: string; channel: string; state: string; last_error: string | null }>(
    "SELECT idempotency_key AS key, channel, state, last_error FROM deliveries WHERE event_type <> 'webhook.test'"
  )
  const states = new Map<string, number>()
  const reasons = new Map<string, number>()
  let unreceived = 0
  let reasonless = 0
  let pending = 0
  for (const r of rows) {
    states.set(`${r.channel} ${r.state}`, (states.get(`${r.channel} ${r.state}`) ?? 0) + 1)
    if (r.state === "delivered" && !tallyOf(r.channel).accepted.has(r.key)) unreceived++
    if (r.state === "pending") pending++
    if (r.state === "failed") {
      if (r.last_error === null || r.last_error.trim() === "") reasonless++
      else {
        // The reason's kind, without the details that differ per delivery.
        const kind = r.last_error.replace(/\s*\(.*$|:.*$/s, "").slice(0, 60)
        reasons.set(`${r.channel}: ${kind}`, (reasons.get(`${r.channel}: ${kind}`) ?? 0) + 1)
      }
    }
  }
  const known = new Set(rows.map((r) => r.key))
  const strangers = [...smtp.tally.accepted.keys(), ...webhook.tally.accepted.keys()].filter((k) => !known.has(k))
  const { rows: [missing] } = await db.query<{ email: number; webhook: number }>(
    `SELECT
       (SELECT count(*)::int FROM notifications n JOIN users u ON u.id = n.recipient_id
         WHERE n.channel = 'email' AND u.email IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id)) AS email,
       (SELECT count(*)::int FROM outbox o WHERE o.event_type = ANY($1::text[])
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.channel = 'webhook' AND d.event_id = o.event_id::text))
         AS webhook`,
    [WEBHOOK_EVENTS]
  )
  // Keys received twice (or more), each receipt matched to the try that carried it (receivers.ts, explainDoubles).
  const twice = [...seenTwice(smtp.tally), ...seenTwice(webhook.tally)]
  const { rows: logged } = await db.query<
    { key: string; attempt: number | null; outcome: string; status: number | null }
  >(
    `SELECT d.idempotency_key AS key, a.attempt, a.outcome, a.status
       FROM delivery_attempt_log a JOIN deliveries d ON d.id = a.delivery_id
      WHERE d.idempotency_key = ANY($1::text[])`,
    [twice.map(([key]) => key)]
  )
  const { byCause, unexplained: unexplainedKeys } = explainDoubles(twice, logged, crashes)
  const unexplained = unexplainedKeys.length
  const crashCounts = new Map<string, number>()
  for (const c of crashes) crashCounts.set(c.name, (crashCounts.get(c.name) ?? 0) + 1)
  const n = (key: string) => states.get(key) ?? 0
  const answers = (t: typeof smtp.tally) =>
    `${t.outcomes.accepted} / ${t.outcomes.permanent} / ${t.outcomes.failed} / ${t.outcomes.hung} / ${t.outcomes.dropped}`
  return {
    rows: [
      ...(["email", "webhook"] as const).map((c): [string, string] => [
        `${c} deliveries: delivered / failed / pending`,
        `${n(`${c} delivered`)} / ${n(`${c} failed`)} / ${n(`${c} pending`)}`
      ]),
      ["failed deliveries' reasons", [...reasons].map(([k, v]) => `${k} (${v})`).join("; ") || "none"],
      [
        "SMTP answers: accepted / refused 550 / 451 / hung / dropped",
        `${answers(smtp.tally)} (rates ${JSON.stringify(SMTP_RATES)})`
      ],
      [
        "webhook answers: accepted / 301 / 5xx / hung / dropped",
        `${answers(webhook.tally)}, bad signatures ${webhook.tally.badSignatures} (rates ${
          JSON.stringify(WEBHOOK_RATES)
        })`
      ],
      [
        "keys received twice: email / webhook",
        `${seenTwice(smtp.tally).length} / ${seenTwice(webhook.tally).length}`
      ],
      [
        "  after a crash between send and record, or a late answer",
        [...byCause].map(([k, v]) => `${k}: ${v}`).join(", ") || "none"
      ],
      ["  with no crash or late answer to explain it", String(unexplained)],
      ["crashes (sender stopped or its database)", [...crashCounts].map(([k, v]) => `${k} x${v}`).join(", ") || "none"]
    ],
    checks: [
      [
        `every delivery received or failed with its reason (pending ${pending}, delivered unseen ${unreceived}, failed without reason ${reasonless})`,
        pending === 0 && unreceived === 0 && reasonless === 0
      ],
      [
        `every email notification and every event has its delivery (missing ${missing!.email} / ${missing!.webhook})`,
        missing!.email === 0 && missing!.webhook === 0
      ],
      [
        `receivers got nothing unknown, every signature verified (${strangers.length} / ${webhook.tally.badSignatures})`,
        strangers.length === 0 && webhook.tally.badSignatures === 0
      ],
      [
        `a key received twice only after a crash between send and record, or a late answer (unexplained ${unexplained}${
          unexplainedKeys.length === 0 ? "" : `: ${unexplainedKeys.slice(0, 5).join("; ")}`
        })`,
        unexplained === 0
      ]
    ]
  }
}

// ------------------------------------------------------------------- main ---
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const main = async () => {
  const started = Date.now()
  log(`writes=${WRITES} rate=${RATE}/s concurrency=${CONCURRENCY} outage=${OUTAGE_MS / 1000}s`)

  // Another run's services on these ports would be stopped and flushed by this one: refuse instead.
  for (
    const [own, port, what] of [[OWN_BROKER, OWN_BROKER_PORT, "broker"], [OWN_REDIS, OWN_REDIS_PORT, "redis"]] as const
  ) {
    if (own && await portTaken(port)) {
      throw new Error(`port ${port} is taken (another chaos run?): give this one another --${what}-port`)
    }
  }
  if (OWN_BROKER) {
    log(`starting a RabbitMQ node of the run's own on 127.0.0.1:${OWN_BROKER_PORT} (scripts/cluster.sh)`)
    ownServices.broker = true
    await sh(cluster("start"))
  }
  if (OWN_REDIS) {
    ownServices.redis = true
    await sh(commands.redisStart)
  }
  // Fresh database, vhost and Redis database.
  log(`stores: database and vhost ${NAMES.database}, ${REDIS_URL}`)
  await freshStores(PG_BASE, NAMES, REDIS_URL, RABBITMQCTL)
  if (MODE === "faults") await startReceivers()

  if (!flag("no-build")) {
    log("building dist/ (npm run build)")
    await exec(process.execPath, ["scripts/build.mjs"], { timeout: 300_000 })
  }

  // The stack: faults mode 1 API (with its relay) + 1 worker; scale mode 2 APIs (relays off) + 2 relays + 3
  // workers; drain mode 1 API and no worker until the backlog is written. All start at once on the fresh
  // database, so their migrations race (they must not fail).
  const apiCount = MODE === "scale" ? 2 : 1
  const apis: Array<Proc> = []
  for (let i = 0; i < apiCount; i++) {
    const port = await freePort()
    BASES.push(`http://127.0.0.1:${port}`)
    apis.push(startProc("api", {
      DATABASE_URL,
      AMQP_URL,
      REDIS_URL,
      PORT: String(port),
      LOG_FORMAT: "json",
      LOG_LEVEL: "warn",
      ...notificationEnv,
      ...(MODE === "scale" ? { OUTBOX_RELAY: "off" } : {})
    }))
  }
  fleet.apis = apis
  if (MODE === "faults") restartWorker()
  if (MODE === "scale") {
    for (let i = 0; i < 2; i++) fleet.relays.push(startProc("relay", relayEnv()))
    for (let i = 0; i < 3; i++) fleet.workers.push(startProc("worker", workerEnv()))
    stats.workerStarts += 3
  }
  await Promise.all([
    ...apis.map((api, i) => awaitReady(api, READY_TIMEOUT_MS, answers200(`${BASES[i]}/health`))),
    ...fleet.relays.map((relay) => awaitReady(relay, READY_TIMEOUT_MS)),
    ...fleet.workers.map((w) => awaitReady(w, READY_TIMEOUT_MS))
  ])
  log(
    `up: ${apis.length} API(s), ${fleet.relays.length} relay(s), ${
      MODE === "faults" ? 1 : fleet.workers.length
    } worker(s)`
  )

  // The webhook receiver's subscription, before any event: every event must reach it.
  const adminToken = await login("admin", "admin123")
  if (receivers.webhook !== undefined) {
    const a = await http("POST", "/v1/webhooks", adminToken, {
      url: receivers.webhook.url,
      eventTypes: WEBHOOK_EVENTS,
      description: "chaos receiver"
    })
    if (a.status !== 201) throw new Error(`create webhook: ${a.status} ${JSON.stringify(a.body)}`)
    receivers.webhook.setSecret(String(field(a, "secret")))
  }

  // Users: the admin creates two agents and four customers, each with an email address.
  const actors: Array<Actor> = []
  for (const [role, n] of [["agent", 2], ["customer", 4]] as const) {
    for (let i = 0; i < n; i++) {
      const username = `chaos-${role}-${i}-${Date.now() % 100000}`
      const password = "chaos-password"
      const email = `${username}@chaos.test`
      const a = await http("POST", "/v1/users", adminToken, { username, password, role, email })
      if (a.status !== 201) throw new Error(`create user: ${a.status} ${JSON.stringify(a.body)}`)
      actors.push({ id: String(field(a, "id")), username, role, password, token: await login(username, password) })
    }
  }
  if (MODE === "faults") {
    // The admin too; and anyone the API did not give one (an API without `email` on users ignores it).
    const setup = new pg.Client({ connectionString: DATABASE_URL })
    await setup.connect()
    await setup.query("UPDATE users SET email = username || '@chaos.test' WHERE email IS NULL")
    await setup.end()
  }
  const agents = actors.filter((a) => a.role === "agent")
  const customers = actors.filter((a) => a.role === "customer")
  const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(Math.random() * xs.length)]!
  const tickets: Array<Ticket> = []

  // Faults at random moments of the load, shuffled.
  const durationMs = (WRITES / RATE) * 1000
  const planned = (MODE === "scale" ? scaleFaults() : MODE === "drain" ? [] : faults()).map((f) => ({
    ...f,
    at: durationMs * (0.1 + 0.7 * Math.random())
  })).sort((a, b) => a.at - b.at)
  let faultsDone = false
  const faultRunner = (async () => {
    const t0 = Date.now()
    for (const f of planned) {
      await sleep(Math.max(0, t0 + f.at - Date.now()))
      log(`fault: ${f.name}`)
      try {
        await f.run()
        injected.push(f.name)
      } catch (e) {
        log(`fault ${f.name} went wrong: ${e instanceof Error ? e.message : String(e)}`)
        faultErrors.push(`${f.name}: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
    faultsDone = true
  })()

  // Steady load: WRITES writes at RATE per second, CONCURRENCY at a time.
  let issued = 0
  const t0 = Date.now()
  const oneWrite = async () => {
    const r = Math.random()
    if (tickets.length < 5 || r < 0.4) {
      const owner = pick(customers)
      const a = await write(() =>
        http("POST", "/v1/tickets", owner.token, {
          title: `Chaos ${issued}`,
          description: "under fire",
          priority: pick(["low", "medium", "high", "urgent"])
        })
      )
      if (a && a.status === 201) tickets.push({ id: String(field(a, "id")), ownerId: owner.id, status: "open" })
    } else if (r < 0.6) {
      const t = pick(tickets)
      const author = Math.random() < 0.5 ? actors.find((x) => x.id === t.ownerId)! : pick(agents)
      await write(() => http("POST", "/v1/messages", author.token, { ticketId: t.id, content: `message ${issued}` }))
    } else if (r < 0.8) {
      const t = pick(tickets)
      const to = NEXT[t.status]
      t.status = to // optimistic: a 409 means another writer moved it first
      const a = await write(() => http("POST", `/v1/tickets/${t.id}/status`, pick(agents).token, { status: to }))
      if (a && a.status === 409) {
        const now = await http("GET", `/v1/tickets/${t.id}`, adminToken).catch(() => undefined)
        const status = now ? field(now, "status") : undefined
        if (typeof status === "string" && status in NEXT) t.status = status as Ticket["status"]
      }
    } else {
      const t = pick(tickets)
      await write(() =>
        http("PATCH", `/v1/tickets/${t.id}`, pick(agents).token, {
          priority: pick(["low", "medium", "high", "urgent"]),
          assigneeId: pick(agents).id
        })
      )
    }
  }
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < WRITES) {
        const n = issued++
        await sleep(Math.max(0, t0 + (n * 1000) / RATE - Date.now()))
        await oneWrite()
      }
    })
  )
  log(`load done: ${writes.ok} writes in ${((Date.now() - t0) / 1000).toFixed(1)}s; waiting for the faults to finish`)
  await faultRunner
  if (!faultsDone) throw new Error("faults did not finish")

  // Drain: every outbox row published, every queue (and retry queue) empty, then quiet.
  const db = new pg.Client({ connectionString: DATABASE_URL })
  await db.connect()
  const connection = await amqp.connect(AMQP_URL)
  const channel = await connection.createChannel()
  const depth = async (q: string) => (await channel.checkQueue(q)).messageCount
  const retryQueues = (await sh(`${RABBITMQCTL} -q list_queues -p ${VHOST} name`)).split("\n").filter((n) =>
    n.startsWith("opsdesk.retry.")
  )
  let drainFigures: { readonly events: number; readonly seconds: number } | undefined
  if (MODE === "drain") {
    // The backlog: every event published and waiting in its queue, and no worker yet.
    const count = async (text: string) => (await db.query<{ n: number }>(text)).rows[0]!.n
    const events = await count("SELECT count(*)::int AS n FROM outbox")
    for (;;) {
      let queued = 0
      for (const q of QUEUES) queued += await depth(q)
      const unpublished = await count("SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL")
      if (unpublished === 0 && queued >= events) break
      await sleep(250)
    }
    log(`backlog: ${events} events queued; starting ${DRAIN_WORKERS} worker(s), prefetch ${PREFETCH ?? "default"}`)
    for (let i = 0; i < DRAIN_WORKERS; i++) fleet.workers.push(startProc("worker", workerEnv()))
    stats.workerStarts += DRAIN_WORKERS
    // From the first worker consuming (the others start meanwhile, as they would in production) to the last event.
    await Promise.race(fleet.workers.map((w) => w.ready))
    const t = Date.now()
    while ((await count("SELECT count(*)::int AS n FROM processed_events")) < events) await sleep(100)
    drainFigures = { events, seconds: (Date.now() - t) / 1000 }
    await Promise.all(fleet.workers.map((w) => awaitReady(w, READY_TIMEOUT_MS)))
  }

  const drainStart = Date.now()
  // When the events had drained, and when the deliveries had too (faults mode): what the receivers' faults cost.
  let eventsDrainedAt = 0
  let drainSeconds: { readonly events: number; readonly all: number } | undefined
  let quietSince = 0
  let lastProcessed = -1
  for (;;) {
    const { rows: [o] } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL"
    )
    const { rows: [p] } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM processed_events")
    let queued = 0
    for (const q of [...QUEUES, ...retryQueues]) queued += await depth(q)
    // Faults mode: every delivery sent or given up on too (a killed dispatcher's lease must run out first).
    const pendingDeliveries = MODE !== "faults" ? 0 : (await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM deliveries WHERE state = 'pending'"
    )).rows[0]!.n
    if (o!.n === 0 && queued === 0) eventsDrainedAt ||= Date.now()
    else eventsDrainedAt = 0
    const idle = o!.n === 0 && queued === 0 && pendingDeliveries === 0 && p!.n === lastProcessed
    lastProcessed = p!.n
    if (idle) {
      if (quietSince === 0) quietSince = Date.now()
      if (Date.now() - quietSince > 3000) {
        drainSeconds = { events: (eventsDrainedAt - drainStart) / 1000, all: (quietSince - drainStart) / 1000 }
        break
      }
    } else quietSince = 0
    if (Date.now() - drainStart > DRAIN_TIMEOUT_MS) {
      log(`drain timed out: unpublished=${o!.n} queued=${queued} pending deliveries=${pendingDeliveries}`)
      break
    }
    await sleep(250)
  }

  // The books.
  const q = async <R extends pg.QueryResultRow>(text: string) => (await db.query<R>(text)).rows
  const [totals] = await q<{ events: number; unpublished: number; processed: number; lost: number; doubled: number }>(`
    SELECT
      (SELECT count(*)::int FROM outbox) AS events,
      (SELECT count(*)::int FROM outbox WHERE published_at IS NULL) AS unpublished,
      (SELECT count(*)::int FROM processed_events) AS processed,
      (SELECT count(*)::int FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id::text)) AS lost,
      (SELECT count(*)::int FROM (SELECT event_id FROM processed_events GROUP BY event_id, processor_name HAVING count(*) > 1) d) AS doubled`)
  // One notification per recipient and channel, when notifications have channels (email, in_app).
  const channels = (await q<{ channels: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'notifications' AND column_name = 'channel') AS channels"
  ))[0]?.channels === true
  const perChannel = channels ? ", channel" : ""
  const [notes] = await q<{ doubled: number; createdMissing: number; strangers: number }>(`
    SELECT
      (SELECT count(*)::int FROM (SELECT 1 FROM notifications GROUP BY event_id, recipient_id${perChannel} HAVING count(*) > 1) d) AS doubled,
      (SELECT count(*)::int FROM outbox o WHERE o.event_type = 'ticket.created'
         AND (SELECT count(*) FROM notifications n WHERE n.event_id = o.event_id::text) <> 1) AS "createdMissing",
      (SELECT count(*)::int FROM notifications n WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id::text = n.event_id)) AS strangers`)
  const lags = (await q<{ ms: number }>(`
    SELECT extract(epoch FROM (p.processed_at - (o.envelope->>'occurredAt')::timestamptz)) * 1000 AS ms
    FROM outbox o JOIN processed_events p ON p.event_id = o.event_id::text`)).map((r) => Number(r.ms))

  const deliveries = MODE === "faults" ? await deliveryBooks(db) : { rows: [], checks: [] }

  // The DLQ holds exactly the poison messages.
  const dlqMessages: Array<amqp.GetMessage> = []
  for (;;) {
    const m = await channel.get(DLQ, { noAck: false })
    if (m === false) break
    dlqMessages.push(m)
  }
  channel.nackAll(true)
  const dlqPoison = dlqMessages.filter((m) => m.properties.headers?.["opsdesk-error-kind"] === "poison").length
  // A worker killed between the DLQ copy's confirm and the original's ack dead-letters that message
  // again on redelivery (at-least-once): count distinct messages, by body and original queue.
  const dlqDistinct = new Set(
    dlqMessages.map((m) =>
      `${String(m.properties.headers?.["opsdesk-original-queue"])}:${m.content.toString("base64")}`
    )
  ).size

  // Every cached listing matches the database: ask twice per user (the second is served from the cache).
  let staleListings = 0
  for (const actor of [...actors, { id: "", token: adminToken, role: "admin" as const }]) {
    for (let i = 0; i < 2; i++) {
      const a = await http("GET", "/v1/tickets?limit=50", actor.token)
      const items = (field(a, "items") ?? []) as Array<
        { id: string; status: string; priority: string; assigneeId: string | null }
      >
      const rows = await q<{ id: string; status: string; priority: string; assignee_id: string | null }>(
        `SELECT id, status, priority, assignee_id FROM tickets ${
          actor.role === "customer" ? `WHERE owner_id = '${actor.id}'` : ""
        }
         ORDER BY created_at DESC, id DESC LIMIT 50`
      )
      const same = items.length === rows.length &&
        items.every((t, j) =>
          t.id === rows[j]!.id && t.status === rows[j]!.status && t.priority === rows[j]!.priority &&
          t.assigneeId === rows[j]!.assignee_id
        )
      if (!same) staleListings++
    }
  }

  // Workers first, gracefully: each writes its final counters to the registry as it stops.
  const workersNow = MODE === "faults" ? [worker] : fleet.workers
  for (const w of workersNow) w.child.kill("SIGTERM")
  const workerExits = await Promise.all(workersNow.map((w) => w.exited))
  // Each worker's share, from the registry (one row per worker process; a killed one as of its last heartbeat).
  const registry = await q<{ id: string; processed: number; stopped: boolean }>(
    "SELECT id, processed::int AS processed, stopped_at IS NOT NULL AS stopped FROM workers ORDER BY started_at, id"
  )
  const registered = registry.reduce((n, r) => n + r.processed, 0)
  await connection.close()
  await db.end()
  for (const p of [...fleet.relays, ...apis]) p.child.kill("SIGTERM")
  await Promise.all([...fleet.relays, ...apis].map((p) => p.exited))
  const shareOf = (n: number) => (registered > 0 ? `${((100 * n) / registered).toFixed(1)}%` : "-")
  const shares = registry.map((r) =>
    `${r.id.split(":")[1]}${r.stopped ? "" : " (no final write)"}: ${r.processed} (${shareOf(r.processed)})`
  )

  const checks: Array<[string, boolean]> = [
    ["every fault kind injected", injected.length === planned.length && faultErrors.length === 0],
    ["no API write failed (after retries)", writes.failed === 0],
    ["every outbox event published", totals!.unpublished === 0],
    ["every event processed (lost = 0)", totals!.lost === 0],
    ["no event processed twice", totals!.doubled === 0],
    ["no notification doubled", notes!.doubled === 0],
    ["one notification per ticket.created", notes!.createdMissing === 0],
    ["no notification without an event", notes!.strangers === 0],
    ["DLQ holds exactly the poison messages", dlqDistinct === poisonCount && dlqPoison === dlqMessages.length],
    ["every cached listing matches the database", staleListings === 0],
    ...deliveries.checks,
    ...(MODE === "faults" ? [] : [
      ["every worker stopped cleanly (exit 0)", workerExits.every((c) => c === 0)] as [string, boolean],
      ...(MODE === "drain"
        ? []
        : [
          [
            // Each queue's messages go round-robin to its consumers: the workers that ran through the load share them
            // (one killed early, or started after the load, may have none).
            "the work is shared: 2 worker processes or more processed events",
            registry.filter((r) => r.processed > 0).length >= 2
          ] as [string, boolean]
        ])
    ])
  ]
  const rows: Array<[string, string]> = [
    ["faults injected", injected.join(", ")],
    ["writes (ok / retried after 5xx / failed)", `${writes.ok} / ${writes.retriedWrites} / ${writes.failed}`],
    [
      "non-2xx answers during faults",
      [...writes.statuses.entries()].map(([s, n]) => `${s === 0 ? "no answer" : s}: ${n}`).join(", ") || "none"
    ],
    ["events (outbox)", String(totals!.events)],
    ["processed", String(totals!.processed)],
    ["duplicates suppressed", String(stats.duplicates)],
    ["retried", String(stats.retried)],
    ["lost", String(totals!.lost)],
    ["effects doubled", String(totals!.doubled + notes!.doubled)],
    ["DLQ count: distinct / copies (poison injected)", `${dlqDistinct} / ${dlqMessages.length} (${poisonCount})`],
    ...deliveries.rows,
    [
      "drain after the faults: events / deliveries settled",
      drainSeconds === undefined
        ? "timed out"
        : `${drainSeconds.events.toFixed(1)} s / ${drainSeconds.all.toFixed(1)} s`
    ],
    ["worker starts", String(stats.workerStarts)],
    ["worker starts replaced (stuck or crashed)", String(stats.stuckStarts)],
    [
      "end-to-end lag p50 / p99 / max",
      `${percentile(lags, 50).toFixed(0)} / ${percentile(lags, 99).toFixed(0)} / ${Math.max(...lags).toFixed(0)} ms`
    ],
    ...(MODE === "faults" ? [] : [
      [
        "processes",
        `${apis.length} API(s)${
          MODE === "scale" ? " (relay off)" : ""
        }, ${fleet.relays.length} relay(s), ${workersNow.length} worker(s), PREFETCH ${PREFETCH ?? "default"}`
      ] as [string, string],
      ["processed per worker process (pid: events, share)", shares.join("; ")] as [string, string],
      ["processed by the registry's count / in processed_events", `${registered} / ${totals!.processed}`] as [
        string,
        string
      ]
    ]),
    ...(drainFigures === undefined ? [] : [
      [
        "drain: events / seconds / events per second",
        `${drainFigures.events} / ${drainFigures.seconds.toFixed(1)} / ${
          (drainFigures.events / drainFigures.seconds).toFixed(0)
        }`
      ] as [string, string]
    ]),
    ["run time", `${((Date.now() - started) / 1000).toFixed(0)} s`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  console.log(`\nOpsDesk chaos run${MODE === "faults" ? "" : ` (${MODE})`}`)
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`)
  console.log("")
  for (const [k, ok] of checks) console.log(`  ${ok ? "PASS" : "FAIL"}  ${k}`)
  const failed = checks.filter(([, ok]) => !ok).length
  console.log(`\n${checks.length - failed} passed, ${failed} failed`)
  process.exitCode = failed === 0 ? 0 : 1
}

/** Kills what the harness started and leaves the services running, whatever happened. */
const cleanUp = async () => {
  for (const child of running) child.kill("SIGKILL")
  // A pid-suffixed run's stores go with it, whatever happened (before its own broker node does).
  if (NAMES.fromPid) await dropStores(PG_BASE, NAMES, RABBITMQCTL).catch(() => undefined)
  await Promise.all([receivers.smtp?.close(), receivers.webhook?.close()]).catch(() => undefined)
  // The fault run's own broker node and Redis go; services given to it are started again (a no-op when they run).
  if (ownServices.broker) await sh(cluster("stop")).catch(() => undefined)
  else if (MODE === "faults" && !OWN_BROKER) await sh(commands.rabbitStart).catch(() => undefined)
  if (ownServices.redis) await sh(commands.redisStop).catch(() => undefined)
  else if (MODE === "faults" && !OWN_REDIS) await sh(commands.redisStart).catch(() => undefined)
  setTimeout(() => process.exit(), 1000).unref()
}

// Interrupted (Ctrl-C, or a test's timeout): clean up too, and fail.
process.once("SIGINT", () => {
  log("interrupted")
  process.exitCode = 1
  void cleanUp()
})

main().catch((e: unknown) => {
  log(`chaos run failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
  process.exitCode = 1
}).finally(cleanUp)
