/**
 * `npm run soak`: retention under a steady load, bounded in time.
 *
 * Runs the production bundles (`node dist/api.mjs`, `node dist/worker.mjs`,
 * built first unless `--no-build`) on their own database (`opsdesk_soak`),
 * RabbitMQ vhost (`opsdesk_soak`) and Redis database (11) (with SOAK_NAME_SUFFIX=x:
 * `opsdesk_soak_x` and a Redis database of 1-10, see scripts/lib/isolation.ts;
 * `pid` for this process's id, dropped at the end), with retention set
 * short: published outbox rows, notifications and audit rows kept
 * `--retention-s` seconds, claims twice that (the dedupe window must exceed
 * DLQ_REPLAY_WINDOW, set to `--retention-s`, plus the retry delays), the
 * worker running it every `--interval-s`. It writes at `--rate` writes per
 * second for `--minutes`, samples every table's row count every
 * `--sample-s`, and then checks:
 *
 *  - flat: after the first retention period (the claims' window plus one
 *    interval), each retained table's count stays in a band: the later half
 *    of the samples is not above the earlier half (no growth), and no
 *    sample is above what the windows allow at this rate;
 *  - the books: every event written (each 2xx write makes one) was seen in
 *    the outbox and had its claim there while its outbox row lived (claims
 *    outlive outbox rows, and rows are checked every few seconds before
 *    retention removes them); the worker processed exactly as many events as
 *    were written (`opsdesk_worker_processed_total`), no notification was
 *    written twice for one event, recipient and channel, and the DLQ is empty.
 *
 * Prints the samples as a table and exits non-zero if a check failed.
 *
 *   npm run soak -- [--minutes 10] [--rate 20] [--retention-s 60] [--interval-s 15] [--sample-s 30] [--no-build]
 *
 * Tickets, messages and users are the helpdesk's data and are kept: they grow
 * with the load, by design, and are shown for comparison.
 */
import * as amqp from "amqplib"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import pg from "pg"
import { type Answer, apiClient, field } from "./lib/http.js"
import { dropStores, freshStores, runNames } from "./lib/isolation.js"
import { options } from "./lib/options.js"
import { answers200, awaitReady, freePort, running, sleep, startProc } from "./lib/processes.js"

const exec = promisify(execFile)

// ---------------------------------------------------------------- options ---
const { flag, number } = options()
const opt = (name: string, fallback: number) => number(name, fallback, true)
const MINUTES = opt("minutes", 10)
const RATE = opt("rate", 20)
const RETENTION_S = opt("retention-s", 60)
const INTERVAL_S = opt("interval-s", 15)
const SAMPLE_S = opt("sample-s", 30)
const CONCURRENCY = 8
/** How often the books look at the outbox: well inside the outbox window, so no row goes unseen. */
const CHECK_EVERY_MS = Math.min(5000, (RETENTION_S * 1000) / 4)
/** An event published this long ago must have been claimed (the worker is never that far behind here). */
const GRACE_S = 10
const READY_TIMEOUT_MS = 90_000

// SOAK_NAME_SUFFIX (or HARNESS_NAME_SUFFIX; `pid` for this process's id) keeps two runs' stores apart.
const NAMES = runNames("SOAK", "opsdesk_soak", 11)
const PG_BASE = process.env.SOAK_PG_BASE ?? "postgres://root@127.0.0.1:5432"
const DATABASE_URL = `${PG_BASE}/${NAMES.database}`
const AMQP_URL = `${process.env.SOAK_AMQP_BASE ?? "amqp://guest:guest@127.0.0.1:5672"}/${NAMES.vhost}`
const REDIS_URL = process.env.SOAK_REDIS_URL ?? `redis://127.0.0.1:6379/${NAMES.redisDb}`
const DLQ = "tickets.dlq"
const QUEUES = ["ticket.created.queue", "ticket.updated.queue", "ticket.status_changed.queue", "message.sent.queue"]

const RETAINED = ["outbox", "processed_events", "notifications", "audit_log"] as const
const KEPT = ["tickets", "messages", "users"] as const

const log = (s: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${s}\n`)

// Warnings and errors, and retention's own lines, as they come.
const echo = (proc: string, line: string) => {
  if (/"logLevel":"(WARN|ERROR|FATAL)"|Retention/.test(line)) log(`${proc}: ${line.slice(0, 400)}`)
}

const { bases, http, login } = apiClient()

// ------------------------------------------------------------------ books ---
/** Every event id seen in the outbox, and whether its claim was ever seen with it. */
const seen = new Map<string, boolean>()
let doubledNotifications = 0

const checkBooks = async (db: pg.Client, grace: number) => {
  const { rows } = await db.query<{ id: string; claimed: boolean }>(
    `SELECT o.event_id::text AS id,
            EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = o.event_id::text) AS claimed
       FROM outbox o
      WHERE o.published_at IS NOT NULL AND o.published_at < now() - make_interval(secs => $1)`,
    [grace]
  )
  for (const r of rows) seen.set(r.id, (seen.get(r.id) ?? false) || r.claimed)
  const { rows: [d] } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM notifications GROUP BY event_id, recipient_id, channel HAVING count(*) > 1) x`
  )
  doubledNotifications = Math.max(doubledNotifications, d!.n)
}

// ---------------------------------------------------------------- samples ---
interface Sample {
  readonly t: number
  readonly counts: Record<string, number>
  readonly mb: number
  /** Events written so far (the outbox id sequence). */
  readonly events: number
}

const sampleCounts = async (db: pg.Client, t0: number): Promise<Sample> => {
  const counts: Record<string, number> = {}
  for (const table of [...RETAINED, ...KEPT]) {
    counts[table] = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n
  }
  const { rows: [size] } = await db.query<{ mb: number }>(
    `SELECT (sum(pg_total_relation_size(c))::float8 / 1048576) AS mb
       FROM unnest(ARRAY['outbox','processed_events','notifications','audit_log']::regclass[]) AS c`
  )
  const { rows: [seq] } = await db.query<{ n: string }>(
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM outbox_id_seq"
  )
  return { t: Math.round((Date.now() - t0) / 1000), counts, mb: size!.mb, events: Number(seq!.n) }
}

const scrape = async (port: number) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const sum = (name: string) =>
    text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce(
      (acc, l) => acc + Number(l.slice(l.lastIndexOf(" ") + 1)),
      0
    )
  const byTable = (table: string) =>
    text.split("\n").filter((l) => l.startsWith("opsdesk_retention_removed_total{") && l.includes(`table="${table}"`))
      .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
  return {
    processed: sum("opsdesk_worker_processed_total"),
    duplicates: sum("opsdesk_worker_duplicates_total"),
    removed: Object.fromEntries(RETAINED.map((t) => [t, byTable(t)]))
  }
}

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (r: ReadonlyArray<string>) => `| ${r.map((c, i) => c.padStart(widths[i]!)).join(" | ")} |`
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n")
}

// ------------------------------------------------------------------- main ---
const main = async () => {
  log(
    `minutes=${MINUTES} rate=${RATE}/s retention=${RETENTION_S}s (claims ${2 * RETENTION_S}s) interval=${INTERVAL_S}s`
  )
  log(`stores: database and vhost ${NAMES.database}, ${REDIS_URL}`)
  await freshStores(PG_BASE, NAMES, REDIS_URL)
  if (!flag("no-build")) {
    log("building dist/ (npm run build)")
    await exec(process.execPath, ["scripts/build.mjs"], { timeout: 300_000 })
  }

  const retentionEnv = {
    RETENTION_OUTBOX: `${RETENTION_S} seconds`,
    RETENTION_NOTIFICATIONS: `${RETENTION_S} seconds`,
    RETENTION_AUDIT_LOG: `${RETENTION_S} seconds`,
    RETENTION_PROCESSED_EVENTS: `${2 * RETENTION_S} seconds`,
    DLQ_REPLAY_WINDOW: `${RETENTION_S} seconds`,
    RETENTION_INTERVAL: `${INTERVAL_S} seconds`
  }
  const common = { DATABASE_URL, AMQP_URL, REDIS_URL, LOG_FORMAT: "json", ...retentionEnv }
  const apiPort = await freePort()
  const metricsPort = await freePort()
  bases.push(`http://127.0.0.1:${apiPort}`)
  const api = startProc("api", { env: { ...common, PORT: String(apiPort), LOG_LEVEL: "warn" }, onLine: echo })
  await awaitReady(api, READY_TIMEOUT_MS, answers200(`${bases[0]}/health`))
  const worker = startProc("worker", {
    env: {
      ...common,
      LOG_LEVEL: "info",
      LOG_EVENTS: "none",
      METRICS_INTERVAL_MS: "600000",
      WORKER_METRICS_PORT: String(metricsPort)
    },
    onLine: echo
  })
  await awaitReady(worker, READY_TIMEOUT_MS, answers200(`http://127.0.0.1:${metricsPort}/metrics`))
  log("up: 1 API (with its relay), 1 worker")

  const adminToken = await login("admin", "admin123")
  const users: Array<{ id: string; token: string; role: string }> = []
  for (const [role, n] of [["agent", 2], ["customer", 4]] as const) {
    for (let i = 0; i < n; i++) {
      const username = `soak-${role}-${i}`
      const a = await http("POST", "/v1/users", adminToken, { username, password: "soak-password", role })
      if (a.status !== 201) throw new Error(`create user: ${a.status} ${JSON.stringify(a.body)}`)
      users.push({ id: String(field(a, "id")), token: await login(username, "soak-password"), role })
    }
  }
  const agents = users.filter((u) => u.role === "agent")
  const customers = users.filter((u) => u.role === "customer")
  const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(Math.random() * xs.length)]!
  const tickets: Array<{ id: string; owner: { id: string; token: string } }> = []

  const db = new pg.Client({ connectionString: DATABASE_URL })
  await db.connect()
  // Rows written before the load (the users' audit rows, ...) are part of the run too.
  const t0 = Date.now()
  const durationMs = MINUTES * 60_000
  const total = Math.round((durationMs / 1000) * RATE)
  const writes = { ok: 0, failed: new Map<number, number>() }

  const samples: Array<Sample> = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const s = await sampleCounts(db, t0)
      samples.push(s)
      log(`t=${s.t}s ${Object.entries(s.counts).map(([k, v]) => `${k}=${v}`).join(" ")} (${s.mb.toFixed(1)} MB)`)
      const next = t0 + samples.length * SAMPLE_S * 1000
      while (sampling && Date.now() < next) await sleep(200)
    }
  })()
  let checking = true
  const checker = (async () => {
    while (checking) {
      await checkBooks(db, GRACE_S).catch((e) => log(`books check failed: ${String(e)}`))
      await sleep(CHECK_EVERY_MS)
    }
  })()

  let issued = 0
  const oneWrite = async () => {
    const r = Math.random()
    let a: Answer
    if (tickets.length < 5 || r < 0.4) {
      const owner = pick(customers)
      a = await http("POST", "/v1/tickets", owner.token, {
        title: `Soak ${issued}`,
        description: "steady",
        priority: "medium"
      })
      if (a.status === 201) tickets.push({ id: String(field(a, "id")), owner })
    } else if (r < 0.7) {
      const t = pick(tickets)
      const author = Math.random() < 0.5 ? t.owner : pick(agents)
      a = await http("POST", "/v1/messages", author.token, {
        ticketId: t.id,
        content: `message ${issued} @${"soak-agent-0"}`
      })
    } else {
      const t = pick(tickets)
      a = await http("PATCH", `/v1/tickets/${t.id}`, pick(agents).token, {
        priority: pick(["low", "medium", "high", "urgent"]),
        assigneeId: pick(agents).id
      })
    }
    if (a.status >= 200 && a.status < 300) writes.ok++
    else writes.failed.set(a.status, (writes.failed.get(a.status) ?? 0) + 1)
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    // Bounded in time: a loaded machine that cannot keep the rate writes less, not longer.
    while (issued < total && Date.now() < t0 + durationMs) {
      const n = issued++
      await sleep(Math.max(0, t0 + (n * 1000) / RATE - Date.now()))
      await oneWrite().catch(() => writes.failed.set(0, (writes.failed.get(0) ?? 0) + 1))
    }
  }))
  log(
    `load done: ${writes.ok} writes ok (${issued} issued, ${total} planned) in ${
      ((Date.now() - t0) / 1000).toFixed(0)
    }s`
  )

  // Drain: everything published, the queues empty, every claim made.
  const connection = await amqp.connect(AMQP_URL)
  const channel = await connection.createChannel()
  const depth = async (q: string) => (await channel.checkQueue(q)).messageCount
  const drainDeadline = Date.now() + 120_000
  for (;;) {
    const unpublished = (await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL"
    )).rows[0]!.n
    let queued = 0
    for (const q of QUEUES) queued += await depth(q)
    const m = await scrape(metricsPort)
    const written = Number((await db.query<{ n: string }>("SELECT last_value AS n FROM outbox_id_seq")).rows[0]!.n)
    if (unpublished === 0 && queued === 0 && m.processed >= written) break
    if (Date.now() > drainDeadline) {
      log(`drain timed out: unpublished=${unpublished} queued=${queued}`)
      break
    }
    await sleep(500)
  }
  checking = false
  await checker
  await checkBooks(db, 0)
  sampling = false
  await sampler
  samples.push(await sampleCounts(db, t0))
  const metrics = await scrape(metricsPort)
  const dlqDepth = await depth(DLQ)
  // Events written: outbox rows ever inserted (its id sequence; a write that changed nothing made none).
  const events = Number(
    (await db.query<{ n: string }>(
      "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM outbox_id_seq"
    )).rows[0]!.n
  )
  await connection.close()

  // Flat: samples after the first retention period (claims' window plus an interval, plus a sample's slack).
  const warmup = 2 * RETENTION_S + INTERVAL_S + SAMPLE_S
  const steady = samples.filter((s) => s.t >= warmup && s.t <= durationMs / 1000)
  const half = Math.floor(steady.length / 2)
  // What the windows allow at this rate: events per second (rows per event from the samples) times window + interval + slack.
  // A loaded machine does not hold the write rate, so a table's count is judged against the events written within
  // its window plus an interval before each sample (what it should hold): that ratio must not grow.
  const windowOf = (t: (typeof RETAINED)[number]) => (t === "processed_events" ? 2 : 1) * RETENTION_S + INTERVAL_S
  const writtenWithin = (s: Sample, seconds: number) => {
    const before = [...samples].reverse().find((x) => x.t <= s.t - seconds) ?? samples[0]!
    return Math.max(1, s.events - before.events)
  }
  const flat = RETAINED.map((t) => {
    const values = steady.map((s) => s.counts[t]! / writtenWithin(s, windowOf(t)))
    const first = values.slice(0, half)
    const second = values.slice(half)
    const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
    const ok = steady.length >= 4 && mean(second) <= mean(first) * 1.25
    return {
      table: t,
      min: Math.min(...values),
      max: Math.max(...values),
      first: mean(first),
      second: mean(second),
      ok
    }
  })
  const lost = [...seen.values()].filter((claimed) => !claimed).length
  const checks: Array<[string, boolean]> = [
    ["every write answered 2xx", writes.failed.size === 0],
    [
      `every event written seen in the outbox (${seen.size} of ${events}, from ${writes.ok} writes)`,
      seen.size === events && events <= writes.ok
    ],
    [`every event claimed while its outbox row lived (lost = ${lost})`, lost === 0],
    [
      `processed exactly once (worker processed ${metrics.processed} of ${events})`,
      metrics.processed === events
    ],
    [`no notification doubled (${doubledNotifications})`, doubledNotifications === 0],
    [`DLQ empty (${dlqDepth})`, dlqDepth === 0],
    ...flat.map((f): [string, boolean] => [
      `${f.table} flat after ${warmup}s (rows per event written in its window + interval: ${f.first.toFixed(2)} then ${
        f.second.toFixed(2)
      }; range ${f.min.toFixed(2)}..${f.max.toFixed(2)})`,
      f.ok
    ])
  ]

  const header = ["t (s)", ...RETAINED, ...KEPT, "retained MB"]
  console.log(
    `\nRetention soak, ${new Date().toISOString().slice(0, 10)}: ${MINUTES} min at ${RATE} writes/s, ` +
      `outbox/notifications/audit kept ${RETENTION_S}s, claims ${2 * RETENTION_S}s, retention every ${INTERVAL_S}s\n`
  )
  console.log(
    table(
      header,
      samples.map((s) => [String(s.t), ...[...RETAINED, ...KEPT].map((t) => String(s.counts[t])), s.mb.toFixed(1)])
    )
  )
  console.log(`\nremoved by retention: ${RETAINED.map((t) => `${t} ${metrics.removed[t]}`).join(", ")}`)
  console.log(
    `writes: ${writes.ok} ok${
      writes.failed.size ? `, failed ${JSON.stringify([...writes.failed])}` : ""
    }; duplicates suppressed ${metrics.duplicates}\n`
  )
  for (const [name, ok] of checks) console.log(`${ok ? "PASS" : "FAIL"}  ${name}`)
  // Size follows the write rate as the counts do; shown, not judged (dead rows are reused once vacuumed).
  console.log(
    `INFO  retained tables' size: ${steady[0]?.mb.toFixed(1) ?? "?"} MB after warm-up, ${
      samples[samples.length - 1]!.mb.toFixed(1)
    } MB at the end`
  )

  for (const child of running) child.kill("SIGTERM")
  await Promise.all([api.exited, worker.exited])
  await db.end()
  if (NAMES.fromPid) await dropStores(PG_BASE, NAMES)
  process.exitCode = checks.every(([, ok]) => ok) ? 0 : 1
}

main().catch((e) => {
  log(e instanceof Error ? e.stack ?? e.message : String(e))
  for (const child of running) child.kill("SIGKILL")
  process.exit(1)
})
