/**
 * Names of a harness run's own stores: its PostgreSQL database, RabbitMQ vhost
 * and Redis database. Each harness wipes them at start, so two runs with the
 * same names (a CI run of the short chaos test and a developer's `npm run
 * chaos` on one machine) would wipe each other. A suffix keeps them apart:
 * `<PREFIX>_NAME_SUFFIX` (e.g. CHAOS_NAME_SUFFIX, SOAK_NAME_SUFFIX) or
 * HARNESS_NAME_SUFFIX; the value `pid` stands for this process's id (a run
 * that clashes with nothing, its stores dropped at the end).
 *
 * Redis has numbered databases only (16 here, db 0 for the tests and 11-15 for
 * the harnesses' unsuffixed runs): a suffixed run takes one of 1-10 by a hash
 * of its names. Two suffixed runs can still meet there; set the harness's
 * REDIS_URL override to be sure.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import pg from "pg"

const exec = promisify(execFile)

export interface RunNames {
  /** The suffix ("" when none is set). */
  readonly suffix: string
  /** Whether the suffix came from the pid (the run's stores are its own: drop them at the end). */
  readonly fromPid: boolean
  readonly database: string
  readonly vhost: string
  readonly redisDb: number
}

/** The first Redis database a suffixed run may use, and how many there are (1-10). */
const SUFFIXED_REDIS_FIRST = 1
const SUFFIXED_REDIS_COUNT = 10

/** `base` (e.g. opsdesk_chaos) and its default Redis db, with the suffix from `<prefix>_NAME_SUFFIX`. */
export const runNames = (prefix: string, base: string, defaultRedisDb: number): RunNames => {
  const raw = (process.env[`${prefix}_NAME_SUFFIX`] ?? process.env.HARNESS_NAME_SUFFIX ?? "").trim().toLowerCase()
  const fromPid = raw === "pid"
  const suffix = fromPid ? String(process.pid) : raw
  // Spliced into SQL and shell commands: plain names only.
  if (!/^[a-z0-9_]*$/.test(suffix)) throw new Error(`${prefix}_NAME_SUFFIX must be [a-z0-9_] (got "${raw}")`)
  const database = suffix === "" ? base : `${base}_${suffix}`
  let hash = 0
  for (const c of database) hash = (hash * 31 + c.charCodeAt(0)) >>> 0
  return {
    suffix,
    fromPid,
    database,
    vhost: database,
    redisDb: suffix === "" ? defaultRedisDb : SUFFIXED_REDIS_FIRST + (hash % SUFFIXED_REDIS_COUNT)
  }
}

const sh = async (command: string) => (await exec("bash", ["-c", command], { timeout: 120_000 })).stdout.trim()

/** Drops and creates `database` (through `pgBase`'s `postgres` database). */
export const freshDatabase = async (pgBase: string, database: string) => {
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` })
  await admin.connect()
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    await admin.query(`CREATE DATABASE ${database}`)
  } finally {
    await admin.end()
  }
}

export const dropDatabase = async (pgBase: string, database: string) => {
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` })
  await admin.connect()
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
  } finally {
    await admin.end()
  }
}

/** Deletes and creates `vhost` (through `ctl`, the machine's broker by default), guest allowed everything on it. */
export const freshVhost = (vhost: string, ctl = "rabbitmqctl") =>
  sh(
    `${ctl} -q delete_vhost ${vhost} >/dev/null 2>&1 || true; ${ctl} -q add_vhost ${vhost} && ${ctl} -q set_permissions -p ${vhost} guest '.*' '.*' '.*'`
  )

export const dropVhost = (vhost: string, ctl = "rabbitmqctl") =>
  sh(`${ctl} -q delete_vhost ${vhost} >/dev/null 2>&1 || true`)

/** Empties the Redis database of `redisUrl`. */
export const flushRedis = (redisUrl: string) => sh(`redis-cli -u ${redisUrl} flushdb`)

/** A run's stores, fresh: database, vhost and Redis database. */
export const freshStores = async (
  pgBase: string,
  names: Pick<RunNames, "database" | "vhost">,
  redisUrl: string,
  ctl?: string
) => {
  await freshDatabase(pgBase, names.database)
  await freshVhost(names.vhost, ctl)
  await flushRedis(redisUrl)
}

/** Drops what `freshStores` made (a pid-suffixed run's, at its end; Redis is left to its next user). */
export const dropStores = async (pgBase: string, names: Pick<RunNames, "database" | "vhost">, ctl?: string) => {
  await dropDatabase(pgBase, names.database)
  await dropVhost(names.vhost, ctl)
}
