/**
 * `npm run bench`: OpsDesk side by side with the seed's reference worker, the
 * broker's ceiling and a bare HTTP server, measured in one run on the same
 * services, compared as ratios.
 *
 *   npm run bench -- [--n 20000] [--runs 3] [--only drain,publish,api,e2e] [--api-duration 10]
 *                    [--api-quiet-wait 60] [--e2e-rate 500] [--e2e-seconds 30] [--e2e-warmup 10] [--profile]
 *
 * The API part runs bench-api.mjs with OpsDesk, the bare node:http server and
 * the NestJS peer (nest-api.mjs, publishing to the vhost `opsdesk_bench_nest`)
 * interleaved. OpsDesk runs as `npm start` runs it: the API with
 * OUTBOX_RELAY=off beside the relay's own process. At the end every target of
 * issue 15 is printed with its value.
 *
 * ../shared/bench may be read-only: it is copied into .bench/baseline and
 * installed there from its own lockfile. Everything runs in the RabbitMQ vhost
 * `opsdesk_bench` and the databases `opsdesk_bench` (the seed worker's table,
 * as the baseline scripts expect) and `opsdesk_benchmark` (OpsDesk's schema).
 * Results go to stdout and to .bench/results/bench-<time>.json.
 */
import * as amqp from "amqplib"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import { createServer } from "node:net"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import pg from "pg"
import { faultBucket } from "../src/Worker/Faults.js"
import { EVENTS, makeEvent } from "./lib/events.js"

const exec = promisify(execFile)
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`)
/** Starts `f(i)` for i < n at `perSecond` a second, on schedule (not waiting for answers); resolves with them started. */
const atRate = async <A>(n: number, perSecond: number, f: (i: number) => Promise<A>): Promise<Array<Promise<A>>> => {
  const t0 = performance.now()
  const started: Array<Promise<A>> = []
  for (let i = 0; i < n; i++) {
    const wait = t0 + (i * 1000) / perSecond - performance.now()
    if (wait > 1) await sleep(wait)
    started.push(f(i))
  }
  return started
}

const argv = process.argv.slice(2)
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback
}
const N = Number(arg("n", "20000"))
const RUNS = Number(arg("runs", "3"))
const ONLY = new Set(arg("only", "drain,publish,api,e2e").split(","))
const API_DURATION = arg("api-duration", "10")
/** bench-api waits up to this long for a quiet machine before each measurement (its default: 60 s). */
const API_QUIET_WAIT = arg("api-quiet-wait", "60")
const E2E_RATE = Number(arg("e2e-rate", "500"))
const E2E_SECONDS = Number(arg("e2e-seconds", "30"))
/**
 * Seconds of the same writes before the measured ones, untimed: the processes run for months, and V8 is still
 * compiling their hot paths well into a fresh process's first 30 s (README, Benchmarks). bench-api and the relay's
 * run warm up alike.
 */
const E2E_WARMUP = Number(arg("e2e-warmup", "10"))
/** --profile: OpsDesk's processes write V8 CPU profiles to .bench/profiles (open them in Chrome DevTools). */
const PROFILE = argv.includes("--profile")

const ROOT = resolve(import.meta.dirname, "..")
const NODE_ARGS = PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${join(ROOT, ".bench/profiles")}`] : []
const SHARED = resolve(ROOT, "../shared/bench")
const SCRATCH = join(ROOT, ".bench/baseline")
const PG_BASE = process.env.BENCH_PG_BASE ?? "postgres://opsdesk:opsdesk@127.0.0.1:5432"
const SEED_DB = `${PG_BASE}/opsdesk_bench`
const OPSDESK_DB = `${PG_BASE}/opsdesk_benchmark`
const VHOST = "opsdesk_bench"
/** The NestJS peer publishes its ticket.created events here, apart from OpsDesk's, so bench-api can count them. */
const NEST_VHOST = "opsdesk_bench_nest"
const AMQP_URL = `${process.env.BENCH_AMQP_BASE ?? "amqp://guest:guest@127.0.0.1:5672"}/${VHOST}`
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379"
const QUEUES = EVENTS.map((e) => `${e}.queue`)

// --------------------------------------------------------------- helpers ---
const children = new Set<ChildProcess>()
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL")
})
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130))

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
  readonly output: () => string
  readonly result: () => Record<string, number | string> | undefined
}

const run = (
  cmd: string,
  args: ReadonlyArray<string>,
  opts: { cwd?: string; env?: Record<string, string> } = {}
): Running => {
  const child = spawn(cmd, args, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let out = ""
  let result: Record<string, number | string> | undefined
  let buf = ""
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString()
    let i: number
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (line.startsWith("RESULT ")) result = JSON.parse(line.slice(7)) as Record<string, number | string>
      else if (out.length < 200_000) out += line + "\n"
    }
  })
  child.stderr!.on("data", (d: Buffer) => {
    if (out.length < 200_000) out += d.toString()
  })
  const exited = new Promise<number | null>((r) =>
    child.once("exit", (code) => {
      children.delete(child)
      r(code)
    })
  )
  return { child, exited, output: () => out, result: () => result }
}

const stop = async (r: Running) => {
  if (r.child.exitCode !== null) return
  r.child.kill("SIGTERM")
  const t = setTimeout(() => r.child.kill("SIGKILL"), 15_000)
  await r.exited
  clearTimeout(t)
}

const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      s.close(() => res(typeof a === "object" && a !== null ? a.port : 0))
    })
  })

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}
const rssMb = (pid: number | undefined) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

// ------------------------------------------------------------------ setup ---
const setup = async () => {
  if (
    !existsSync(join(SCRATCH, "node_modules")) ||
    readFileSync(join(SHARED, "package-lock.json"), "utf8") !== readFileSync(join(SCRATCH, "package-lock.json"), "utf8")
  ) {
    log(`copying ${SHARED} to ${SCRATCH} and installing its dependencies`)
    mkdirSync(SCRATCH, { recursive: true })
    cpSync(SHARED, SCRATCH, {
      recursive: true,
      filter: (src) => !src.includes("node_modules") && !src.includes("/results")
    })
    await exec("npm", ["ci", "--no-audit", "--no-fund"], { cwd: SCRATCH, timeout: 600_000 })
  }
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` })
  await admin.connect()
  for (const db of ["opsdesk_bench", "opsdesk_benchmark"]) {
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [db])
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${db}`)
  }
  await admin.end()
  const seed = new pg.Client({ connectionString: SEED_DB })
  await seed.connect()
  // The seed's table (its migration 0008), as the baseline worker expects it.
  await seed.query(`CREATE TABLE IF NOT EXISTS processed_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL, event_id text NOT NULL, event_type text NOT NULL,
    processed_at timestamp DEFAULT now() NOT NULL, processor_name text NOT NULL,
    CONSTRAINT processed_events_event_id_unique UNIQUE (event_id))`)
  await seed.end()
  // OpsDesk runs as it does in production: the bundles of npm run build, plain node.
  log("building dist/ (npm run build)")
  await exec("npm", ["run", "build"], { cwd: ROOT, timeout: 300_000 })
  const migrate = run(process.execPath, ["dist/migrate.mjs"], { env: { DATABASE_URL: OPSDESK_DB } })
  if ((await migrate.exited) !== 0) throw new Error(`migrate failed:\n${migrate.output()}`)
  for (const vhost of [VHOST, NEST_VHOST]) {
    await exec("bash", [
      "-c",
      `rabbitmqctl -q add_vhost ${vhost} 2>/dev/null; rabbitmqctl -q set_permissions -p ${vhost} guest '.*' '.*' '.*'`
    ])
  }
  // bench-api counts nest's events in ticket.created.queue of the lib.mjs topology: declare it.
  const c = await amqp.connect(AMQP_URL.replace(new RegExp(`/${VHOST}$`), `/${NEST_VHOST}`))
  const ch = await c.createChannel()
  await ch.assertExchange("opsdesk.events", "topic", { durable: true })
  await ch.assertQueue("ticket.created.queue", {
    durable: true,
    deadLetterExchange: "",
    deadLetterRoutingKey: "tickets.dlq"
  })
  await ch.bindQueue("ticket.created.queue", "opsdesk.events", "ticket.created")
  await c.close()
}

// ----------------------------------------------------------------- events ---

const withChannel = async <A>(f: (ch: amqp.ConfirmChannel) => Promise<A>) => {
  const c = await amqp.connect(AMQP_URL)
  try {
    return await f(await c.createConfirmChannel())
  } finally {
    await c.close().catch(() => undefined)
  }
}

/** Purges the queues, then pre-publishes n events (a share `dupes` twice); returns what was published. */
const prepublish = (n: number, dupes: number) =>
  withChannel(async (ch) => {
    await ch.assertExchange("opsdesk.events", "topic", { durable: true })
    await ch.assertQueue("tickets.dlq", { durable: true })
    for (const [i, q] of QUEUES.entries()) {
      await ch.assertQueue(q, { durable: true, deadLetterExchange: "", deadLetterRoutingKey: "tickets.dlq" })
      await ch.bindQueue(q, "opsdesk.events", EVENTS[i]!)
      await ch.purgeQueue(q)
    }
    await ch.purgeQueue("tickets.dlq")
    let published = 0
    let copies = 0
    const ids: Array<string> = []
    const events: Array<ReturnType<typeof makeEvent>> = []
    for (let i = 0; i < n; i++) {
      const e = makeEvent(EVENTS[i % 4]!)
      ids.push(e.eventId)
      events.push(e)
      const body = Buffer.from(JSON.stringify(e))
      const times = dupes > 0 && Math.floor((i + 1) * dupes) > Math.floor(i * dupes) ? 2 : 1
      for (let k = 0; k < times; k++) {
        if (
          !ch.publish("opsdesk.events", e.event, body, {
            persistent: true,
            contentType: "application/json",
            messageId: e.eventId,
            type: e.event
          })
        ) {
          await new Promise((r) => ch.once("drain", r))
        }
        published++
      }
      copies += times - 1
      if (i % 1000 === 999) await ch.waitForConfirms()
    }
    await ch.waitForConfirms()
    return { published, unique: n, dupes: copies, ids, events }
  })

type BenchEvent = ReturnType<typeof makeEvent>

/**
 * The users, tickets and messages the events name: the worker acts only on
 * events about entities that exist (as the API's always are). Returns a
 * function that deletes them again.
 */
const insertEntities = async (db: pg.Client, events: ReadonlyArray<BenchEvent>) => {
  const users = new Set<string>()
  const tickets = new Map<string, string>()
  const messages: Array<[string, string, string]> = []
  for (const { payload: p } of events) {
    if ("authorId" in p && p.authorId !== undefined) {
      users.add(p.authorId)
      tickets.set(p.ticketId, p.authorId)
      messages.push([p.id, p.ticketId, p.authorId])
    } else if ("ownerId" in p && p.ownerId !== undefined) {
      users.add(p.ownerId)
      tickets.set(p.id, p.ownerId)
    }
  }
  await db.query(
    "INSERT INTO users (id, username, password_hash, role) SELECT id, 'bench-' || id, 'x', 'customer' FROM unnest($1::uuid[]) AS u(id)",
    [[...users]]
  )
  await db.query(
    "INSERT INTO tickets (id, title, description, owner_id) SELECT id, 't', 'd', o FROM unnest($1::uuid[], $2::uuid[]) AS t(id, o)",
    [[...tickets.keys()], [...tickets.values()]]
  )
  await db.query(
    `INSERT INTO messages (id, ticket_id, author_id, content)
     SELECT id, t, a, 'b' FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS m(id, t, a)`,
    [messages.map((m) => m[0]), messages.map((m) => m[1]), messages.map((m) => m[2])]
  )
  return async () => {
    await db.query("DELETE FROM messages WHERE id = ANY($1::uuid[])", [messages.map((m) => m[0])])
    await db.query("DELETE FROM tickets WHERE id = ANY($1::uuid[])", [[...tickets.keys()]])
    await db.query("DELETE FROM users WHERE id = ANY($1::uuid[])", [[...users]])
  }
}

const queueDepth = () =>
  withChannel(async (ch) => {
    let total = 0
    for (const q of [...QUEUES, "tickets.dlq"]) total += (await ch.checkQueue(q)).messageCount
    return total
  })

// ------------------------------------------------------------------ drain ---
interface DrainResult {
  readonly variant: string
  readonly rate: number
  readonly ok: boolean
  readonly note: string
  readonly rssMb?: number
  /** CPU µs per event by process while it drained (PostgreSQL's includes the bench's 4 polls a second). */
  readonly cpu?: Readonly<Record<string, number>>
}

/** CPU seconds of the services a drain uses (each a scan of /proc). */
const servicesCpu = () => ({
  postgres: postgresCpuSeconds(),
  rabbitmq: rabbitmqCpuSeconds(),
  redis: commandCpuSeconds("redis-server")
})
/** CPU seconds of the drain's parties: the consumer, PostgreSQL, RabbitMQ, Redis. */
const drainCpu = (pid: number) => ({ consumer: cpuSeconds(pid), ...servicesCpu() })
const cpuPerEvent = (before: ReturnType<typeof drainCpu>, after: ReturnType<typeof drainCpu>, n: number) =>
  Object.fromEntries(
    (Object.keys(before) as Array<keyof typeof before>).map((k) => [k, Math.round((after[k] - before[k]) * 1e6 / n)])
  )

const drainBaseline = async (
  variant: "seed-worker" | "raw-limit" | "raw-limit-multi",
  n: number
): Promise<DrainResult> => {
  const db = new pg.Client({ connectionString: SEED_DB })
  await db.connect()
  await db.query("TRUNCATE processed_events")
  const pub = await prepublish(n, 0)
  const script = variant === "seed-worker"
    ? ["seed-worker.mjs"]
    : variant === "raw-limit"
    ? ["raw-limit.mjs"]
    : ["raw-limit.mjs", "--multi-ack"]
  const r = run(process.execPath, [...script, "--expect", String(pub.published)], {
    cwd: SCRATCH,
    env: { AMQP_URL, DATABASE_URL: SEED_DB, REDIS_URL }
  })
  const cpu0 = drainCpu(r.child.pid!)
  let consumer = cpu0.consumer
  const deadline = Date.now() + 300_000
  // The consumer's own CPU is sampled while it runs (one file read): a baseline may exit as soon as it has drained.
  while (!r.result() && Date.now() < deadline && r.child.exitCode === null) {
    await sleep(100)
    try {
      consumer = cpuSeconds(r.child.pid!)
    } catch {
      break
    }
  }
  const cpu = cpuPerEvent(cpu0, { consumer, ...servicesCpu() }, pub.published)
  await stop(r)
  const res = r.result()
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM processed_events")
  await db.end()
  const left = await queueDepth()
  const rowsOk = variant !== "seed-worker" || rows[0]!.n === pub.unique
  return {
    variant,
    rate: Number(res?.rate ?? 0),
    ok: Boolean(res) && left === 0 && rowsOk,
    cpu,
    note: `left ${left}${variant === "seed-worker" ? `, rows ${rows[0]!.n}` : ""}`
  }
}

const drainOpsDesk = async (
  variant: string,
  n: number,
  opts: { dupes?: number; failOncePercent?: number; env?: Record<string, string> } = {}
): Promise<DrainResult> => {
  const db = new pg.Client({ connectionString: OPSDESK_DB })
  await db.connect()
  // CASCADE: the notification deliveries (migration 0009) reference notifications; this database is the bench's own.
  await db.query("TRUNCATE processed_events, notifications CASCADE")
  const pub = await prepublish(n, opts.dupes ?? 0)
  const deleteEntities = await insertEntities(db, pub.events)
  const failPct = opts.failOncePercent ?? 0
  // The events the worker's fault injection will fail once (the same stable hash): the rate is
  // measured over the others, which must not wait for them.
  const failingIds = failPct > 0 ? pub.ids.filter((id) => faultBucket(id) < failPct * 100) : []
  const failing = failingIds.length
  const r = run(process.execPath, [...NODE_ARGS, "dist/worker.mjs"], {
    env: {
      AMQP_URL,
      DATABASE_URL: OPSDESK_DB,
      REDIS_URL,
      WORKER_METRICS_PORT: "0",
      ...(failPct > 0 ? { WORKER_FAULT_FIRST_ATTEMPT_PERCENT: String(failPct) } : {}),
      ...opts.env
    }
  })
  // The rate from the first batch's commit to the last of the events that did not fail, read
  // afterwards from processed_at (each batch's transaction time). The database is only polled
  // every 250 ms for completion: a tight count(*) loop would take PostgreSQL CPU from the worker.
  const cpu0 = drainCpu(r.child.pid!)
  let rss = 0
  const sampler = setInterval(() => (rss = Math.max(rss, rssMb(r.child.pid))), 20)
  const deadline = Date.now() + 300_000
  for (;;) {
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM processed_events")
    if (rows[0]!.n >= pub.unique) break
    if (Date.now() > deadline || r.child.exitCode !== null) break
    await sleep(250)
  }
  clearInterval(sampler)
  const cpu = cpuPerEvent(cpu0, drainCpu(r.child.pid!), pub.published)
  const { rows: [span] } = await db.query<{ seconds: number | null; first: number }>(
    `
    WITH t AS (SELECT min(processed_at) AS first FROM processed_events)
    SELECT extract(epoch FROM (SELECT max(processed_at) FROM processed_events WHERE event_id <> ALL($1::text[])) - t.first)::float8 AS seconds,
           (SELECT count(*)::int FROM processed_events, t x WHERE processed_at = x.first) AS first
    FROM t`,
    [failingIds]
  )
  // Let retries settle before checking the books (1% failing once waits a 1 s broker-held retry).
  await sleep(500)
  await stop(r)
  const { rows: [books] } = await db.query<{ claims: number; notifications: number; doubled: number }>(`
    SELECT (SELECT count(*)::int FROM processed_events) AS claims,
           (SELECT count(*)::int FROM notifications) AS notifications,
           (SELECT count(*)::int FROM (SELECT 1 FROM notifications GROUP BY event_id, recipient_id, channel HAVING count(*) > 1) d) AS doubled`)
  await deleteEntities()
  // Autovacuum may be off (CI machines): the next run must not find these rows' dead versions in its lookups.
  await db.query("VACUUM (ANALYZE) users, tickets, messages")
  await db.end()
  const left = await queueDepth()
  // The recipients policy (Notifications/Recipients.ts) for these events: ticket.created, the owner's emailed
  // receipt; ticket.updated and ticket.status_changed, the owner on both channels (email, in-app); message.sent,
  // nobody (its author owns the ticket and is its only watcher).
  const perEvent: Record<string, number> = {
    "ticket.created": 1,
    "ticket.updated": 2,
    "ticket.status_changed": 2,
    "message.sent": 0
  }
  const expectedNotifications = pub.events.reduce((n, e) => n + perEvent[e.event]!, 0)
  const ok = books!.claims === pub.unique && books!.notifications === expectedNotifications && books!.doubled === 0 &&
    left === 0
  const rate = span!.seconds ? Math.round((pub.unique - failing - span!.first) / span!.seconds) : 0
  return {
    variant,
    rate,
    ok,
    rssMb: Math.round(rss),
    cpu,
    note: `${failing > 0 ? `${failing} failed once and were retried, ` : ""}claims ${
      books!.claims
    }/${pub.unique}, notifications ${books!.notifications}/${expectedNotifications}, left ${left}`
  }
}

// ---------------------------------------------------------------- publish ---
const publishBench = async (n: number) => {
  // Baseline: publish.mjs with confirms (batches of 1000), in the same vhost.
  await prepublish(0, 0)
  const beam0 = rabbitmqCpuSeconds()
  const p = run(process.execPath, ["publish.mjs", "--n", String(n), "--json"], { cwd: SCRATCH, env: { AMQP_URL } })
  await p.exited
  const baseline = Number(p.result()?.rate ?? 0)
  const baselineBeamUs = Math.round((rabbitmqCpuSeconds() - beam0) * 1e6 / n)
  await prepublish(0, 0)

  // OpsDesk: n committed outbox rows, then the relay (its own process, as `npm start` runs it) publishes them, confirmed.
  const db = new pg.Client({ connectionString: OPSDESK_DB })
  await db.connect()
  await db.query("TRUNCATE outbox")
  const relay = await startRelay({ OUTBOX_POLL_INTERVAL_MS: "100000" })
  const insertRows = async (count: number) => {
    for (let i = 0; i < count; i += 1000) {
      const chunk = Array.from({ length: Math.min(1000, count - i) }, (_, k) => makeEvent(EVENTS[(i + k) % 4]!))
      await db.query(
        "INSERT INTO outbox (event_id, event_type, envelope) SELECT * FROM unnest($1::uuid[], $2::text[], $3::json[])",
        [chunk.map((e) => e.eventId), chunk.map((e) => e.event), chunk.map((e) => JSON.stringify(e))]
      )
    }
    await db.query("SELECT pg_notify('opsdesk_outbox', 'bench')")
  }
  const untilPublished = async () => {
    for (;;) {
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL")
      if (rows[0]!.n === 0) return
      await sleep(200)
    }
  }
  // Warm-up, untimed: a relay runs for months, and a fresh one's first batches run before V8 has compiled the
  // hot path (README, Benchmarks). bench-api warms the APIs alike.
  await insertRows(2000)
  await untilPublished()
  await db.query("BEGIN")
  await insertRows(n)
  // Timed on the database's clock, from just before the commit to the last row marked published
  // (the relay stamps published_at after the broker's confirm); polled only every 200 ms, since a
  // tight count(*) loop would take PostgreSQL CPU from the relay.
  const { rows: [start] } = await db.query<{ t: Date }>("SELECT clock_timestamp() AS t")
  const cpu0 = { relay: cpuSeconds(relay.child.pid!), postgres: postgresCpuSeconds(), rabbitmq: rabbitmqCpuSeconds() }
  await db.query("COMMIT")
  await untilPublished()
  // CPU per event of each process while the relay drains (PostgreSQL's includes the bench's few polls).
  const perEvent = (seconds: number) => Math.round(seconds * 1e6 / n)
  const cpu = {
    relay: perEvent(cpuSeconds(relay.child.pid!) - cpu0.relay),
    postgres: perEvent(postgresCpuSeconds() - cpu0.postgres),
    rabbitmq: perEvent(rabbitmqCpuSeconds() - cpu0.rabbitmq)
  }
  const { rows: [end] } = await db.query<{ t: Date }>("SELECT max(published_at) AS t FROM outbox")
  const rate = Math.round(n / ((end!.t.getTime() - start!.t.getTime()) / 1000))
  await stop(relay)
  await db.query("TRUNCATE outbox")
  await db.end()
  await prepublish(0, 0)
  return { baseline, relay: rate, baselineBeamUs, cpu }
}

/** CPU seconds used so far by a process (utime + stime from /proc). */
const cpuSeconds = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(f[11]) + Number(f[12])) / 100
}
/** CPU seconds of every process with this command name (`postgres`, RabbitMQ's `beam.smp`). */
const commandCpuSeconds = (command: string) => {
  let total = 0
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8")
      if (stat.includes(`(${command})`)) total += cpuSeconds(Number(d))
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}
const postgresCpuSeconds = () => commandCpuSeconds("postgres")
const rabbitmqCpuSeconds = () => commandCpuSeconds("beam.smp")

/**
 * The relay at a steady rate, as the API writes: one transaction per event
 * (its outbox row), then the wake-up (RelayWake's), E2E_RATE a second for 10 s. The relay's
 * and PostgreSQL's CPU per event (from /proc; PostgreSQL's includes the
 * writes), and commit → published (after the broker's confirm).
 */
const relaySteady = async () => {
  const pool = new pg.Pool({ connectionString: OPSDESK_DB, max: 20 })
  await pool.query("TRUNCATE outbox")
  const relay = await startRelay()
  const since = new Date()
  const total = E2E_RATE * 10
  const relay0 = cpuSeconds(relay.child.pid!)
  const pg0 = postgresCpuSeconds()
  const t0 = performance.now()
  // After each commit a NOTIFY of its own, one at a time, those due meanwhile coalesced: RelayWake's way.
  const waker = await pool.connect()
  let waking: Promise<unknown> | undefined
  let again = false
  const wake = () => {
    if (waking !== undefined) return void (again = true)
    waking = waker.query("SELECT pg_notify('opsdesk_outbox', ''), set_config('synchronous_commit', 'off', true)")
      .finally(() => {
        waking = undefined
        if (again) {
          again = false
          wake()
        }
      })
  }
  const inflight = await atRate(total, E2E_RATE, (i) => {
    const event = makeEvent(EVENTS[i % 4]!)
    return pool.query(
      `INSERT INTO outbox (event_id, event_type, envelope, headers) VALUES ($1::uuid, $2, $3::json, '{}'::jsonb)`,
      [event.eventId, event.event, JSON.stringify(event)]
    ).then(wake)
  })
  await Promise.all(inflight)
  while (waking !== undefined) await waking
  waker.release()
  const seconds = (performance.now() - t0) / 1000
  for (let i = 0; i < 100; i++) {
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL")
    if (rows[0]!.n === 0) break
    await sleep(100)
  }
  const relayCpu = cpuSeconds(relay.child.pid!) - relay0
  const pgCpu = postgresCpuSeconds() - pg0
  const { rows } = await pool.query<{ ms: number }>(
    `SELECT extract(epoch FROM (published_at - created_at)) * 1000 AS ms FROM outbox
     WHERE created_at >= $1 AND published_at IS NOT NULL`,
    [since]
  )
  const lags = rows.map((r) => Number(r.ms))
  if (lags.length < total) log(`relay steady: ${total - lags.length} of ${total} rows still unpublished after 10 s`)
  await stop(relay)
  await pool.query("TRUNCATE outbox")
  await pool.end()
  await prepublish(0, 0)
  return {
    rate: Math.round(total / seconds),
    relayUsPerEvent: Math.round((relayCpu * 1e6) / total),
    postgresUsPerEvent: Math.round((pgCpu * 1e6) / total),
    p50: percentile(lags, 50),
    p99: percentile(lags, 99)
  }
}

// -------------------------------------------------------------------- api ---
/** Waits until `url` answers 2xx (at most ~30 s), or fails with the output of `proc` if it exits first. */
const untilAnswers = async (proc: Running, url: string, what: string) => {
  for (let i = 0;; i++) {
    const ok = await fetch(url).then((r) => r.ok, () => false)
    if (ok) return
    if (i > 300 || proc.child.exitCode !== null) throw new Error(`${what} did not start:\n${proc.output()}`)
    await sleep(100)
  }
}

/** The standalone relay (`dist/relay.mjs`), started once it answers: `npm start` runs it beside the API. */
const startRelay = async (env: Record<string, string> = {}) => {
  const port = await freePort()
  const proc = run(process.execPath, [...NODE_ARGS, "dist/relay.mjs"], {
    env: { AMQP_URL, DATABASE_URL: OPSDESK_DB, REDIS_URL, RELAY_METRICS_PORT: String(port), LOG_LEVEL: "warn", ...env }
  })
  await untilAnswers(proc, `http://127.0.0.1:${port}/metrics`, "relay")
  return proc
}

/** The API as `npm start` runs it: OUTBOX_RELAY=off, beside its own relay process (startRelay). */
const startApi = async (env: Record<string, string> = {}) => {
  const port = await freePort()
  const proc = run(process.execPath, [...NODE_ARGS, "dist/api.mjs"], {
    env: { AMQP_URL, DATABASE_URL: OPSDESK_DB, REDIS_URL, PORT: String(port), LOG_LEVEL: "warn", ...env }
  })
  const url = `http://127.0.0.1:${port}`
  await untilAnswers(proc, `${url}/health`, "API")
  const login = await fetch(`${url}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: "admin123" })
  })
  const { accessToken } = (await login.json()) as { accessToken: string }
  return { proc, url, token: accessToken }
}

interface ApiSummary {
  readonly target: string
  readonly endpoint: string
  readonly medianReqPerSec: number
  readonly medianP99: number
}

/**
 * OpsDesk's data back to the state every run starts from, as bench-api does for the bare server's and the NestJS
 * peer's tables: the tickets (with their messages), audit rows, outbox, claims and notifications of earlier runs
 * go, and the tables are vacuumed (CI machines run PostgreSQL with autovacuum off, so the drains' deleted entities
 * would otherwise stay as dead rows). Without it every invocation wrote into the tables of all the ones before
 * (~200,000 tickets after a day of runs) while the peers started empty. The users (the admin) stay.
 */
const resetOpsDeskData = async (db: pg.Client) => {
  await db.query("TRUNCATE tickets, audit_log, outbox, processed_events, notifications CASCADE")
  await db.query("VACUUM (ANALYZE) users, tickets, messages, audit_log, outbox, processed_events, notifications")
}

/**
 * bench-api.mjs with OpsDesk, the bare server and the NestJS peer interleaved.
 * OpsDesk runs as `npm start` runs it: the API with OUTBOX_RELAY=off and the
 * relay in its own process. Afterwards the relay must have published every
 * outbox row the POSTs wrote: counted on the database.
 */
const apiBench = async () => {
  const db = new pg.Client({ connectionString: OPSDESK_DB })
  await db.connect()
  await resetOpsDeskData(db)
  await prepublish(0, 0)
  const relay = await startRelay()
  const api = await startApi({ OUTBOX_RELAY: "off" })
  const out = join(ROOT, ".bench/results", `bench-api-${Date.now()}.json`)
  const r = run(process.execPath, [
    "bench-api.mjs",
    "--target",
    api.url,
    "--token",
    api.token,
    "--name",
    "opsdesk",
    "--with-bare",
    "--with-nest",
    "--duration",
    API_DURATION,
    "--runs",
    String(RUNS),
    "--json",
    out,
    "--target-db",
    "opsdesk_benchmark",
    "--quiet-wait-s",
    API_QUIET_WAIT
  ], {
    cwd: SCRATCH,
    env: { DATABASE_URL: SEED_DB, REDIS_URL, AMQP_URL: AMQP_URL.replace(new RegExp(`/${VHOST}$`), `/${NEST_VHOST}`) }
  })
  const code = await r.exited
  // Every row the run wrote, published (the relay may still be finishing the last batch).
  let written = 0
  let unpublished = 0
  for (let i = 0; i < 100; i++) {
    const { rows: [o] } = await db.query<{ written: number; unpublished: number }>(
      "SELECT count(*)::int AS written, (count(*) FILTER (WHERE published_at IS NULL))::int AS unpublished FROM outbox"
    )
    written = o!.written
    unpublished = o!.unpublished
    if (unpublished === 0) break
    await sleep(100)
  }
  await stop(api.proc)
  await stop(relay)
  await db.query("TRUNCATE outbox")
  await db.end()
  await prepublish(0, 0)
  if (code !== 0) throw new Error(`bench-api failed:\n${r.output()}`)
  const summary = (JSON.parse(readFileSync(out, "utf8")) as { summary: ReadonlyArray<ApiSummary> }).summary
  const of = (target: string, endpoint: string) => {
    const s = summary.find((x) => x.target === target && x.endpoint.startsWith(endpoint))
    if (s === undefined) throw new Error(`bench-api: no ${target} ${endpoint} in ${out}`)
    return s
  }
  const post = { opsdesk: of("opsdesk", "POST"), bare: of("bare", "POST"), nest: of("nest", "POST") }
  const get = { opsdesk: of("opsdesk", "GET"), bare: of("bare", "GET"), nest: of("nest", "GET") }
  return { output: r.output(), json: out, post, get, written, unpublished }
}

// -------------------------------------------------------------------- e2e ---
/**
 * The load generator shares the two cores with everything it measures, so it
 * is plain node:http on kept-alive connections: fetch (undici) cost ~0.6 of a
 * core at 500 requests/s, CPU taken from the API, the relay and the worker.
 * Idle sockets close after 2 s, well before the API's keep-alive timeout
 * (HTTP_KEEP_ALIVE_TIMEOUT_MS, 5 s): a POST sent on a socket the server is
 * closing that instant fails with ECONNRESET and is not retried, and Node's
 * own margin (1 s under the server's `Keep-Alive: timeout=5` hint) is one a
 * saturated driver's timers can overrun.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 2000 })
const post = (url: string, token: string, body: string) =>
  new Promise<number>((resolve, reject) => {
    const req = http.request(url, {
      method: "POST",
      agent,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        authorization: `Bearer ${token}`
      }
    }, (res) => {
      res.resume()
      res.once("end", () => resolve(res.statusCode ?? 0))
    })
    req.once("error", reject)
    req.end(body)
  })

/**
 * `relay`: where the outbox relay runs, in a process of its own (`npm start`'s
 * default: `dist/relay.mjs` beside an API with OUTBOX_RELAY=off) or in the API
 * process (OUTBOX_RELAY's own default, for an API started alone); both are
 * measured, so the default stays chosen from figures.
 */
const e2eBench = async (relay: "api" | "process") => {
  const db = new pg.Client({ connectionString: OPSDESK_DB })
  await db.connect()
  await resetOpsDeskData(db)
  await prepublish(0, 0)
  const relayProc = relay === "process" ? await startRelay() : undefined
  const api = await startApi(relay === "process" ? { OUTBOX_RELAY: "off" } : {})
  const worker = run(process.execPath, [...NODE_ARGS, "dist/worker.mjs"], {
    env: { AMQP_URL, DATABASE_URL: OPSDESK_DB, REDIS_URL }
  })
  await sleep(2000)
  const write = (i: number) =>
    post(`${api.url}/v1/tickets`, api.token, JSON.stringify({ title: `e2e ${i}`, description: "latency probe" }))
  if (E2E_WARMUP > 0) {
    const warm = E2E_RATE * E2E_WARMUP
    await Promise.all(await atRate(warm, E2E_RATE, (i) => write(-1 - i).catch(() => undefined)))
    // The warm-up's events are through the worker before the measured writes start.
    for (let i = 0; i < 300; i++) {
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM processed_events")
      if (rows[0]!.n >= warm) break
      await sleep(100)
    }
  }
  const since = new Date()
  const total = E2E_RATE * E2E_SECONDS
  // CPU per write of every process on the path, from /proc (the relay's is in the API's when it runs there).
  const processes = { api: api.proc.child.pid!, relay: relayProc?.child.pid, worker: worker.child.pid! }
  const cpuNow = () => ({
    api: cpuSeconds(processes.api),
    relay: processes.relay === undefined ? 0 : cpuSeconds(processes.relay),
    worker: cpuSeconds(processes.worker),
    postgres: postgresCpuSeconds(),
    rabbitmq: rabbitmqCpuSeconds(),
    driver: (({ system, user }) => (user + system) / 1e6)(process.cpuUsage())
  })
  const cpu0 = cpuNow()
  const t0 = performance.now()
  let failed = 0
  const failures = new Map<string, number>()
  const inflight = await atRate(total, E2E_RATE, (i) =>
    write(i)
      .then((status) => {
        if (status !== 201) {
          failed++
          failures.set(String(status), (failures.get(String(status)) ?? 0) + 1)
        }
      }, (e: unknown) => {
        failed++
        const key = e instanceof Error ? String((e as { code?: string }).code ?? e.message) : String(e)
        failures.set(key, (failures.get(key) ?? 0) + 1)
      }))
  await Promise.all(inflight)
  const achieved = total / ((performance.now() - t0) / 1000)
  await sleep(3000)
  const cpu1 = cpuNow()
  const cpuPerWriteUs = Object.fromEntries(
    Object.entries(cpu1).map(([k, v]) => [k, Math.round(((v - cpu0[k as keyof typeof cpu0]) * 1e6) / total)])
  )
  log(`e2e (relay ${relay}): CPU per write, µs: ${JSON.stringify(cpuPerWriteUs)}`)
  // From the API's transaction (outbox.created_at) to the worker's claim (processed_at).
  // Also split at the broker's confirm (published_at): the relay's share, and the broker's plus the worker's.
  const { rows } = await db.query<{ ms: number; relayMs: number }>(
    `
    SELECT extract(epoch FROM (p.processed_at - o.created_at)) * 1000 AS ms,
           extract(epoch FROM (o.published_at - o.created_at)) * 1000 AS "relayMs"
    FROM outbox o JOIN processed_events p ON p.event_id = o.event_id::text WHERE o.created_at >= $1`,
    [since]
  )
  const lags = rows.map((r) => Number(r.ms))
  const relayLags = rows.map((r) => Number(r.relayMs))
  log(
    `e2e: commit -> broker confirm p50 ${percentile(relayLags, 50).toFixed(1)} ms, p99 ${
      percentile(relayLags, 99).toFixed(1)
    } ms`
  )
  await stop(worker)
  await stop(api.proc)
  if (relayProc !== undefined) await stop(relayProc)
  await db.end()
  if (failures.size > 0) log(`e2e failures: ${[...failures].map(([k, n]) => `${k} x${n}`).join(", ")}`)
  return {
    writes: total,
    failed,
    achievedRate: Math.round(achieved),
    processed: lags.length,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    max: Math.max(...lags),
    relayP50: percentile(relayLags, 50),
    relayP99: percentile(relayLags, 99),
    cpuPerWriteUs
  }
}

// ------------------------------------------------------------------- main ---
const main = async () => {
  const started = new Date()
  log(`N=${N} runs=${RUNS} only=${[...ONLY].join(",")} node=${process.version}`)
  await setup()
  mkdirSync(join(ROOT, ".bench/results"), { recursive: true })
  const report: Record<string, unknown> = { started: started.toISOString(), n: N, runs: RUNS }
  /** Every target of issue 15 measured in this invocation: printed together at the end. */
  const targets: Array<{ what: string; value: string; target: string; met: boolean }> = []
  const ratio = (what: string, value: number, min: number, unit = "x") =>
    targets.push({
      what,
      value: unit === "%" ? `${(100 * value).toFixed(0)}%` : `${value.toFixed(2)}x`,
      target: unit === "%" ? `>= ${(100 * min).toFixed(0)}%` : `>= ${min}x`,
      met: value >= min
    })

  if (ONLY.has("drain")) {
    const variants: Array<[string, () => Promise<DrainResult>]> = [
      ["seed-worker", () => drainBaseline("seed-worker", N)],
      ["opsdesk", () => drainOpsDesk("opsdesk", N)],
      ["opsdesk --dupes 0.1", () => drainOpsDesk("opsdesk --dupes 0.1", N, { dupes: 0.1 })],
      ["opsdesk 1% fail once", () => drainOpsDesk("opsdesk 1% fail once", N, { failOncePercent: 1 })],
      ["raw-limit", () => drainBaseline("raw-limit", N)],
      ["raw-limit --multi-ack", () => drainBaseline("raw-limit-multi", N)]
    ]
    const results = new Map<string, Array<DrainResult>>()
    for (let i = 0; i < RUNS; i++) {
      // Alternate the order between runs so drift hits every variant alike.
      for (const [name, f] of i % 2 === 0 ? variants : [...variants].reverse()) {
        const res = await f()
        log(
          `run ${i + 1} ${name}: ${res.rate} msg/s ${res.ok ? "ok" : "BOOKS WRONG"} (${res.note}${
            res.rssMb ? `, rss ${res.rssMb} MB` : ""
          })`
        )
        results.set(name, [...(results.get(name) ?? []), res])
        await sleep(1000)
      }
    }
    report.drain = Object.fromEntries(results)
    const med = (name: string) => median(results.get(name)!.map((r) => r.rate))
    console.log(
      `\nWorker drain, ${N} events, ${RUNS} runs (events/s, min / median / max; books checked after each run)`
    )
    for (const [name, rs] of results) {
      const rates = rs.map((r) => r.rate)
      const rss = Math.max(...rs.map((r) => r.rssMb ?? 0))
      console.log(
        `  ${name.padEnd(24)} ${String(Math.min(...rates)).padStart(6)} / ${String(med(name)).padStart(6)} / ${
          String(Math.max(...rates)).padStart(6)
        }  ${rs.every((r) => r.ok) ? "books ok" : "BOOKS WRONG"}${rss ? `  max RSS ${rss} MB` : ""}`
      )
    }
    console.log("  CPU per event by process while draining (µs, medians; PostgreSQL's includes the bench's polls):")
    for (const [name, rs] of results) {
      const keys = Object.keys(rs[0]?.cpu ?? {})
      console.log(
        `    ${name.padEnd(22)} ${keys.map((k) => `${k} ${median(rs.map((r) => r.cpu?.[k] ?? 0))}`).join(", ")}`
      )
    }
    console.log(
      `  opsdesk / seed-worker = ${
        (med("opsdesk") / med("seed-worker")).toFixed(1)
      }x (target >= 10x); opsdesk / raw-limit = ${
        (100 * med("opsdesk") / med("raw-limit")).toFixed(0)
      }% (target >= 50%)`
    )
    ratio("worker drain / seed-worker", med("opsdesk") / med("seed-worker"), 10)
    ratio("worker drain / raw-limit", med("opsdesk") / med("raw-limit"), 0.5, "%")
    const rss = Math.max(...results.get("opsdesk")!.map((r) => r.rssMb ?? 0))
    targets.push({ what: "worker RSS (max)", value: `${rss} MB`, target: "< 200 MB", met: rss > 0 && rss < 200 })
    const booksOk = [...results.values()].every((rs) => rs.every((r) => r.ok))
    targets.push({ what: "drain books", value: booksOk ? "ok" : "WRONG", target: "ok", met: booksOk })
    console.log(
      `  with 1% failing once: ${
        (100 * med("opsdesk 1% fail once") / med("opsdesk")).toFixed(0)
      }% of the clean rate; with 10% duplicates: ${(100 * med("opsdesk --dupes 0.1") / med("opsdesk")).toFixed(0)}%`
    )
  }

  if (ONLY.has("publish")) {
    const rs: Array<Awaited<ReturnType<typeof publishBench>>> = []
    for (let i = 0; i < RUNS; i++) {
      const r = await publishBench(N)
      log(
        `run ${
          i + 1
        } publish.mjs ${r.baseline} msg/s (RabbitMQ CPU ${r.baselineBeamUs} µs/msg), outbox relay ${r.relay} events/s (CPU µs/event: relay ${r.cpu.relay}, PostgreSQL ${r.cpu.postgres}, RabbitMQ ${r.cpu.rabbitmq})`
      )
      rs.push(r)
    }
    report.publish = rs
    const b = median(rs.map((r) => r.baseline))
    const o = median(rs.map((r) => r.relay))
    console.log(
      `\nPublishing, ${N} events (medians of ${RUNS}): publish.mjs ${b} msg/s; outbox relay ${o} events/s = ${
        (100 * o / b).toFixed(0)
      }% (target >= 80%)`
    )
    ratio("relay / publish.mjs", o / b, 0.8, "%")
    console.log(
      `  CPU per event (medians): publish.mjs's RabbitMQ ${
        median(rs.map((r) => r.baselineBeamUs))
      } µs; the relay's: relay ${median(rs.map((r) => r.cpu.relay))} µs, PostgreSQL ${
        median(rs.map((r) => r.cpu.postgres))
      } µs, RabbitMQ ${median(rs.map((r) => r.cpu.rabbitmq))} µs`
    )
    const steady = await relaySteady()
    report.relaySteady = steady
    console.log(
      `Outbox relay at a steady ${steady.rate} writes/s (one transaction each, 10 s): relay CPU ${steady.relayUsPerEvent} µs/event, PostgreSQL CPU ${steady.postgresUsPerEvent} µs/event (with the writes); commit -> published p50 ${
        steady.p50.toFixed(1)
      } ms, p99 ${steady.p99.toFixed(1)} ms`
    )
  }

  if (ONLY.has("api")) {
    const r = await apiBench()
    report.api = r.json
    console.log(`\nAPI (bench-api.mjs --with-bare --with-nest, ${API_DURATION} s per endpoint, ${RUNS} runs):`)
    console.log(
      r.output.split("\n").filter((l) => /ratio|req\/s|POST|GET|median|opsdesk|bare|nest/i.test(l)).slice(-40).join(
        "\n"
      )
    )
    const { get, post } = r
    ratio("POST /v1/tickets / nest", post.opsdesk.medianReqPerSec / post.nest.medianReqPerSec, 1.2)
    ratio("POST /v1/tickets / bare", post.opsdesk.medianReqPerSec / post.bare.medianReqPerSec, 0.8)
    targets.push({
      what: "POST /v1/tickets p99 / bare p99",
      value: `${(post.opsdesk.medianP99 / post.bare.medianP99).toFixed(2)}x`,
      target: "<= 1.5x",
      met: post.opsdesk.medianP99 / post.bare.medianP99 <= 1.5
    })
    targets.push({
      what: "relay published the POSTs' rows",
      value: `${r.written - r.unpublished}/${r.written}`,
      target: "all",
      met: r.written > 0 && r.unpublished === 0
    })
    ratio("cached GET /v1/tickets / nest", get.opsdesk.medianReqPerSec / get.nest.medianReqPerSec, 2)
    ratio("cached GET /v1/tickets / bare", get.opsdesk.medianReqPerSec / get.bare.medianReqPerSec, 0.8)
  }

  if (ONLY.has("e2e")) {
    // The relay where `npm start` runs it (its own process) is the target's; the other placement beside it.
    const r = await e2eBench("process")
    const inApi = await e2eBench("api")
    report.e2e = { relayProcess: r, relayInApi: inApi }
    for (const [where, x] of [["relay in its own process", r], ["relay in the API", inApi]] as const) {
      console.log(
        `\nEnd to end at ${E2E_RATE} writes/s for ${E2E_SECONDS} s, ${where} (achieved ${x.achievedRate}/s, ${x.failed} failed): API commit -> worker commit p50 ${
          x.p50.toFixed(1)
        } ms, p99 ${x.p99.toFixed(1)} ms, max ${
          x.max.toFixed(1)
        } ms (${x.processed} events; target p99 < 50 ms); commit -> broker confirm p50 ${
          x.relayP50.toFixed(1)
        } ms, p99 ${x.relayP99.toFixed(1)} ms; CPU per write (µs, from /proc): ${
          Object.entries(x.cpuPerWriteUs).map(([k, v]) => `${k} ${v}`).join(", ")
        }`
      )
    }
    targets.push({
      what: `e2e ${E2E_RATE}/s: writes answered`,
      value: `${r.writes - r.failed}/${r.writes}`,
      target: "all",
      met: r.failed === 0
    })
    targets.push({
      what: "e2e commit -> worker claim p99",
      value: `${r.p99.toFixed(1)} ms`,
      target: "< 50 ms",
      met: r.p99 < 50 && r.processed === r.writes
    })
  }

  report.targets = targets
  console.log(`\nTargets (issue 15; ${RUNS} run${RUNS === 1 ? "" : "s"}, medians):`)
  for (const t of targets) {
    console.log(
      `  ${t.what.padEnd(36)} ${t.value.padStart(12)}  target ${t.target.padEnd(9)} ${t.met ? "met" : "NOT MET"}`
    )
  }
  log(`took ${((Date.now() - started.getTime()) / 60000).toFixed(1)} min`)

  const file = join(ROOT, ".bench/results", `bench-${started.toISOString().replace(/[:.]/g, "-")}.json`)
  writeFileSync(file, JSON.stringify(report, null, 2))
  log(`wrote ${file}`)
}

main().then(() => process.exit(0), (e: unknown) => {
  log(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
  process.exit(1)
})
