/**
 * `npx tsx scripts/prefetch-measure.ts [--prefetch 50,100,250,500,1000] [--rounds 2] [--n 10000] [--backlog 12000]
 * [--only single,fair,late]`:
 * the figures behind the default PREFETCH (README/docs/OPS.md, "Choosing PREFETCH").
 *
 * For each round, every prefetch value in turn (interleaved, so the noise of
 * this shared machine falls on all of them alike), three runs of the
 * production worker bundle (dist/worker.mjs; `npm run build` first) on a
 * pre-published backlog of valid events:
 * - `single`: one worker drains `--n` events; the rate from its first
 *   commit to its last (processed_events.processed_at), as `npm run bench`;
 * - `fair`: three workers started at once drain `--backlog` events; each
 *   one's share (its final counters in the `workers` registry);
 * - `late`: two workers start, a third once they have processed their
 *   first events (so they hold their prefetch); the late one's share.
 * Everything runs in the database and vhost `opsdesk_prefetch_measure`
 * (created here, dropped at the end).
 */
import * as amqp from "amqplib"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { resolve } from "node:path"
import { promisify } from "node:util"
import pg from "pg"
import { EVENTS, makeEvent } from "./lib/events.js"

const exec = promisify(execFile)
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const log = (s: string) => process.stderr.write(`[prefetch ${new Date().toISOString().slice(11, 19)}] ${s}\n`)
const argv = process.argv.slice(2)
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback
}
const PREFETCHES = arg("prefetch", "50,100,250,500,1000").split(",").map(Number)
const ROUNDS = Number(arg("rounds", "2"))
const N = Number(arg("n", "10000"))
const BACKLOG = Number(arg("backlog", "12000"))
/** `--only single,fair,late`: which runs. */
const ONLY = new Set(arg("only", "single,fair,late").split(","))
const ROOT = resolve(import.meta.dirname, "..")
const NAME = "opsdesk_prefetch_measure"
const PG_BASE = process.env.MEASURE_PG_BASE ?? "postgres://opsdesk:opsdesk@127.0.0.1:5432"
const DB_URL = `${PG_BASE}/${NAME}`
const AMQP_URL = `${process.env.MEASURE_AMQP_BASE ?? "amqp://guest:guest@127.0.0.1:5672"}/${NAME}`
const QUEUES = EVENTS.map((e) => `${e}.queue`)

const children = new Set<ChildProcess>()
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL")
})
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130))

interface Worker {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  readonly output: () => string
}
const startWorker = (prefetch: number): Worker => {
  const child = spawn(process.execPath, ["dist/worker.mjs"], {
    cwd: ROOT,
    env: {
      ...process.env,
      AMQP_URL,
      DATABASE_URL: DB_URL,
      WORKER_METRICS_PORT: "0",
      PREFETCH: String(prefetch),
      LOG_EVENTS: "none"
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let out = ""
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-4000))
  child.stdout!.on("data", keep)
  child.stderr!.on("data", keep)
  const exited = new Promise<void>((r) =>
    child.once("exit", () => {
      children.delete(child)
      r()
    })
  )
  return { child, exited, output: () => out }
}
const stopWorker = async (w: Worker) => {
  if (w.child.exitCode !== null) return
  w.child.kill("SIGTERM")
  const t = setTimeout(() => w.child.kill("SIGKILL"), 20_000)
  await w.exited
  clearTimeout(t)
}

const backlog = async (db: pg.Client, n: number) => {
  const events = Array.from({ length: n }, (_, i) => makeEvent(EVENTS[i % 4]!))
  const users: Array<string> = []
  const tickets: Array<[string, string]> = []
  const messages: Array<[string, string, string]> = []
  for (const { payload: p } of events) {
    if ("authorId" in p && p.authorId !== undefined && p.ticketId !== undefined) {
      users.push(p.authorId)
      tickets.push([p.ticketId, p.authorId])
      messages.push([p.id, p.ticketId, p.authorId])
    } else if ("ownerId" in p && p.ownerId !== undefined) {
      users.push(p.ownerId)
      tickets.push([p.id, p.ownerId])
    }
  }
  await db.query(
    "INSERT INTO users (id, username, password_hash, role) SELECT id, 'pm-' || id, 'x', 'customer' FROM unnest($1::uuid[]) AS u(id)",
    [users]
  )
  await db.query(
    "INSERT INTO tickets (id, title, description, owner_id) SELECT id, 't', 'd', o FROM unnest($1::uuid[], $2::uuid[]) AS t(id, o)",
    [tickets.map((t) => t[0]), tickets.map((t) => t[1])]
  )
  await db.query(
    "INSERT INTO messages (id, ticket_id, author_id, content) SELECT id, t, a, 'b' FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS m(id, t, a)",
    [messages.map((m) => m[0]), messages.map((m) => m[1]), messages.map((m) => m[2])]
  )
  const c = await amqp.connect(AMQP_URL)
  try {
    const ch = await c.createConfirmChannel()
    for (const q of QUEUES) await ch.purgeQueue(q)
    for (const [i, e] of events.entries()) {
      const body = Buffer.from(JSON.stringify(e))
      const props = { persistent: true, contentType: "application/json", messageId: e.eventId, type: e.event }
      if (!ch.publish("opsdesk.events", e.event, body, props)) await new Promise((r) => ch.once("drain", r))
      if (i % 1000 === 999) await ch.waitForConfirms()
    }
    await ch.waitForConfirms()
  } finally {
    await c.close().catch(() => undefined)
  }
}

const count = async (db: pg.Client, text: string) => (await db.query<{ n: number }>(text)).rows[0]!.n
const processed = (db: pg.Client) => count(db, "SELECT count(*)::int AS n FROM processed_events")

const reset = (db: pg.Client) =>
  db.query("TRUNCATE processed_events, notifications, messages, tickets, users, workers CASCADE")

const awaitProcessed = async (db: pg.Client, n: number, workers: ReadonlyArray<Worker>) => {
  const deadline = Date.now() + 600_000
  while ((await processed(db)) < n) {
    const dead = workers.find((w) => w.child.exitCode !== null)
    if (dead) throw new Error(`a worker exited:\n${dead.output()}`)
    if (Date.now() > deadline) throw new Error("drain timed out")
    await sleep(250)
  }
}

/** Each worker's processed count, from its final registry row (written on SIGTERM), in start order. */
const shares = async (db: pg.Client, workers: ReadonlyArray<Worker>) => {
  const { rows } = await db.query<{ pid: number; processed: string }>("SELECT pid, processed FROM workers")
  return workers.map((w) => Number(rows.find((r) => r.pid === w.child.pid)?.processed ?? 0))
}

const single = async (db: pg.Client, prefetch: number) => {
  await reset(db)
  await backlog(db, N)
  const w = startWorker(prefetch)
  await awaitProcessed(db, N, [w])
  await stopWorker(w)
  const { rows: [s] } = await db.query<{ seconds: number; first: number }>(`
    WITH t AS (SELECT min(processed_at) AS first FROM processed_events)
    SELECT extract(epoch FROM (SELECT max(processed_at) FROM processed_events) - t.first)::float8 AS seconds,
           (SELECT count(*)::int FROM processed_events, t x WHERE processed_at = x.first) AS first
    FROM t`)
  return Math.round((N - s!.first) / s!.seconds)
}

const fleet = async (db: pg.Client, prefetch: number, late: boolean) => {
  await reset(db)
  await backlog(db, BACKLOG)
  const workers = [startWorker(prefetch), startWorker(prefetch)]
  if (late) await awaitProcessed(db, 1, workers)
  workers.push(startWorker(prefetch))
  await awaitProcessed(db, BACKLOG, workers)
  await Promise.all(workers.map(stopWorker))
  const counts = await shares(db, workers)
  const total = counts.reduce((a, b) => a + b, 0)
  if (total !== BACKLOG) log(`  (registry counts ${total} of ${BACKLOG})`)
  return counts.map((c) => Math.round((1000 * c) / total) / 10)
}

/**
 * One run on a connection of its own: another engineer's test may restart
 * PostgreSQL on this shared machine; such a run is logged and left out (NaN).
 */
const attempt = async <A>(run: (db: pg.Client) => Promise<A>, failed: A, retries = 1): Promise<A> => {
  const db = new pg.Client({ connectionString: DB_URL })
  db.on("error", () => undefined)
  try {
    await db.connect()
    return await run(db)
  } catch (e) {
    log(`  run failed${retries > 0 ? ", once more when PostgreSQL answers" : ", left out"}: ${String(e).slice(0, 200)}`)
    for (const c of [...children]) c.kill("SIGKILL")
    await db.end().catch(() => undefined)
    if (retries === 0) return failed
    for (let i = 0; i < 240 && !(await answers()); i++) await sleep(500)
    return attempt(run, failed, retries - 1)
  } finally {
    await db.end().catch(() => undefined)
  }
}

const answers = async () => {
  const db = new pg.Client({ connectionString: DB_URL })
  db.on("error", () => undefined)
  try {
    await db.connect()
    await db.query("SELECT 1")
    return true
  } catch {
    return false
  } finally {
    await db.end().catch(() => undefined)
  }
}

const main = async () => {
  log(`setup: database and vhost ${NAME}`)
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` })
  admin.on("error", () => undefined)
  await admin.connect()
  const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [NAME])
  if (rowCount === 0) await admin.query(`CREATE DATABASE ${NAME}`)
  await exec("bash", [
    "-c",
    `rabbitmqctl -q add_vhost ${NAME} 2>/dev/null; rabbitmqctl -q set_permissions -p ${NAME} guest '.*' '.*' '.*'`
  ])
  const migrate = spawn(process.execPath, ["dist/migrate.mjs"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: DB_URL },
    stdio: "inherit"
  })
  await new Promise((r) => migrate.once("exit", r))
  // The worker declares the topology: one short start before the first backlog.
  const first = startWorker(1000)
  for (let i = 0; i < 600; i++) {
    if (first.output().includes("Worker consuming")) break
    await sleep(100)
  }
  await stopWorker(first)

  const results = new Map<number, { single: Array<number>; fair: Array<Array<number>>; late: Array<number> }>()
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const p of PREFETCHES) {
        const r = results.get(p) ?? { single: [], fair: [], late: [] }
        results.set(p, r)
        if (ONLY.has("single")) r.single.push(await attempt((c) => single(c, p), NaN))
        if (ONLY.has("fair")) r.fair.push(await attempt((c) => fleet(c, p, false), [NaN, NaN, NaN]))
        if (ONLY.has("late")) r.late.push((await attempt((c) => fleet(c, p, true), [NaN, NaN, NaN]))[2]!)
        log(
          `round ${round} prefetch ${p}: single ${r.single.at(-1)} ev/s; 3 at once ${
            r.fair.at(-1)?.join(" / ") ?? "-"
          } %; late third ${r.late.at(-1)} %`
        )
      }
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${NAME} WITH (FORCE)`).catch(() => undefined)
    await admin.end()
    await exec("rabbitmqctl", ["-q", "delete_vhost", NAME]).catch(() => undefined)
  }
  console.log(
    `\n| PREFETCH | single worker, ${N} events (ev/s, per round) | 3 workers at once, ${BACKLOG} events (% each, per round) | third worker joining once the first two process (% share, per round) |`
  )
  console.log("| --- | --- | --- | --- |")
  for (const [p, r] of results) {
    console.log(
      `| ${p} | ${r.single.join(", ")} | ${r.fair.map((f) => f.join("/")).join(", ")} | ${r.late.join(", ")} |`
    )
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
