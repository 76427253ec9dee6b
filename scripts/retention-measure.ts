/**
 * `npx tsx scripts/retention-measure.ts [--rate 500] [--minutes 10]`: what
 * removing old rows costs PostgreSQL, batch deletes (what src/Retention does)
 * against dropping a time partition, at the benchmark's write rate.
 *
 * In a scratch database (`opsdesk_retention_measure`, dropped at the end) it
 * fills two outbox-shaped tables with `--minutes` of rows at `--rate` rows/s
 * (envelopes of the real size): one plain with the retention index, one
 * partitioned by `created_at` into one-minute partitions. Then, for each,
 * while a writer inserts at `--rate` rows/s and records each insert's
 * latency, it removes the oldest half: batches of 5,000 `DELETE ... LIMIT`
 * (then the VACUUM that reclaims them), or `DETACH PARTITION ... CONCURRENTLY`
 * and `DROP TABLE` per partition. It prints the time, the WAL written and the
 * writer's latency (p50, p99, max) during each.
 */
import pg from "pg"

const argv = process.argv.slice(2)
const opt = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : fallback
}
const RATE = opt("rate", 500)
const MINUTES = opt("minutes", 10)
const BATCH = 5000
const PG_BASE = process.env.MEASURE_PG_BASE ?? "postgres://root@127.0.0.1:5432"
const DB = "opsdesk_retention_measure"
const ROWS = RATE * 60 * MINUTES

const envelope = JSON.stringify({
  event: "ticket.created",
  eventId: "00000000-0000-4000-8000-000000000000",
  occurredAt: new Date().toISOString(),
  version: 2,
  actorId: "00000000-0000-4000-8000-000000000001",
  payload: {
    id: "00000000-0000-4000-8000-000000000002",
    title: "A ticket title of a usual length",
    description: "A description of a few sentences, as a customer would write it when something does not work.",
    status: "open",
    priority: "medium",
    ownerId: "00000000-0000-4000-8000-000000000003",
    assigneeId: null,
    createdAt: new Date().toISOString()
  }
})

const columns = `id bigserial, event_id uuid NOT NULL, event_type text NOT NULL, envelope json NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL, published_at timestamptz,
  attempts integer NOT NULL DEFAULT 0, last_error text, retry_at timestamptz`

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const walBytes = async (c: pg.Client) =>
  Number((await c.query("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS b")).rows[0].b)

/** Inserts at RATE rows/s (in 10 ms ticks) until stopped; returns each insert's latency in ms. */
const writer = (url: string, table: string) => {
  let running = true
  const latencies: Array<number> = []
  const done = (async () => {
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    const perTick = Math.max(1, Math.round(RATE / 100))
    let next = Date.now()
    while (running) {
      for (let i = 0; i < perTick; i++) {
        const t = performance.now()
        await c.query(
          `INSERT INTO ${table} (event_id, event_type, envelope, created_at, published_at)
           VALUES (gen_random_uuid(), 'ticket.created', $1, now(), now())`,
          [envelope]
        )
        latencies.push(performance.now() - t)
      }
      next += 10
      await sleep(Math.max(0, next - Date.now()))
    }
    await c.end()
  })()
  return {
    stop: async () => {
      running = false
      await done
      return latencies
    }
  }
}

const pct = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0
}

const main = async () => {
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${DB}`)
  const url = `${PG_BASE}/${DB}`
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  const start = `now() - interval '${MINUTES + 1} minutes'`
  // Rows spread evenly over MINUTES minutes, oldest first, as RATE rows/s would have written them.
  const fill = (table: string) =>
    c.query(
      `INSERT INTO ${table} (event_id, event_type, envelope, created_at, published_at)
       SELECT gen_random_uuid(), 'ticket.created', $1::json, ${start} + (g * interval '1 second') / ${RATE},
              ${start} + (g * interval '1 second') / ${RATE}
       FROM generate_series(1, ${ROWS}) g`,
      [envelope]
    )

  await c.query(`CREATE TABLE plain (${columns}, PRIMARY KEY (id), UNIQUE (event_id))`)
  await c.query("CREATE INDEX plain_published_at_idx ON plain (published_at) WHERE published_at IS NOT NULL")
  await c.query(`CREATE TABLE parted (${columns}, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)`)
  await c.query(`DO $$ DECLARE t timestamptz := date_trunc('minute', ${start}); BEGIN
    FOR i IN 0..${MINUTES + 62} LOOP
      EXECUTE format('CREATE TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%L) TO (%L)', i, t + i * interval '1 minute', t + (i + 1) * interval '1 minute');
    END LOOP; END $$`)
  console.error(`filling ${ROWS} rows (${MINUTES} min at ${RATE}/s) into each table`)
  await fill("plain")
  await fill("parted")
  await c.query("VACUUM ANALYZE plain")
  await c.query("VACUUM ANALYZE parted")
  const cutoff = (await c.query(`SELECT ${start} + interval '${Math.floor(MINUTES / 2)} minutes' AS t`)).rows[0]
    .t as Date

  const results: Array<Array<string>> = []
  const measure = async (name: string, work: () => Promise<number>) => {
    const w = writer(url, name.startsWith("batch") ? "plain" : "parted")
    await sleep(2000)
    const wal0 = await walBytes(c)
    const t0 = performance.now()
    const removed = await work()
    const ms = performance.now() - t0
    const wal = (await walBytes(c)) - wal0
    await sleep(1000)
    const lat = await w.stop()
    results.push([
      name,
      String(removed),
      `${(ms / 1000).toFixed(2)} s`,
      `${(wal / 1048576).toFixed(1)} MB`,
      `${pct(lat, 50).toFixed(2)} / ${pct(lat, 99).toFixed(2)} / ${Math.max(...lat).toFixed(1)} ms`
    ])
  }

  await measure(`batch DELETE (${BATCH} a statement)`, async () => {
    let removed = 0
    for (;;) {
      const r = await c.query(
        `WITH picked AS (SELECT id FROM plain WHERE published_at < $1 ORDER BY published_at LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
         DELETE FROM plain o USING picked WHERE o.id = picked.id`,
        [cutoff]
      )
      removed += r.rowCount ?? 0
      if ((r.rowCount ?? 0) < BATCH) return removed
    }
  })
  await measure("batch: the VACUUM after it", async () => {
    await c.query("VACUUM plain")
    return 0
  })
  await measure("partitions: DETACH CONCURRENTLY + DROP", async () => {
    const { rows } = await c.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'parted'::regclass ORDER BY c.relname`
    )
    let removed = 0
    for (const { name } of rows) {
      const upper = (await c.query(
        `SELECT (regexp_match(pg_get_expr(relpartbound, oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS t FROM pg_class WHERE relname = $1`,
        [name]
      )).rows[0].t as Date
      if (upper > cutoff) continue
      removed += (await c.query(`SELECT count(*)::int AS n FROM ${name}`)).rows[0].n
      await c.query(`ALTER TABLE parted DETACH PARTITION ${name} CONCURRENTLY`)
      await c.query(`DROP TABLE ${name}`)
    }
    return removed
  })

  const header = ["removing the oldest half", "rows", "time", "WAL", "writer latency p50 / p99 / max"]
  const widths = header.map((h, i) => Math.max(h.length, ...results.map((r) => r[i]!.length)))
  const line = (r: ReadonlyArray<string>) => `| ${r.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`
  console.log(`\n${ROWS} rows per table (${MINUTES} min at ${RATE} writes/s), writer at ${RATE} rows/s meanwhile\n`)
  console.log([line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...results.map(line)].join("\n"))
  await c.end()
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`)
  await admin.end()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
