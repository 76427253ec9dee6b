/**
 * Counts the redeliveries of messages that never got settled, so the worker
 * can tell a crash loop from a one-off: a message that makes its batch fail as
 * a whole (a defect in the commit step, not its handler) or kills the worker
 * is requeued by the broker, and a classic queue counts nothing. The count is
 * written only for deliveries the broker flags as `redelivered` (one statement
 * per batch that has any), and kept in PostgreSQL (`delivery_attempts`), so it
 * survives a worker restart: a message that crashes the process itself is
 * caught too. A settled message's row is removed.
 *
 * The default (when no layer is provided) keeps the counts in this process's
 * memory: the isolation still works, only a restart forgets. The worker
 * process provides `CrashCounterLive`.
 */
import { SqlClient } from "@effect/sql"
import { Context, Data, Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import type { Delivery } from "../Broker/Delivery.js"
import { describeSqlError } from "../Store/SqlState.js"

export class CrashCounterError extends Data.TaggedError("CrashCounterError")<{ readonly message: string }> {}

export interface Attempts {
  /** Deliveries of the message that were not settled before this one (the redeliveries seen, this one included). */
  readonly deliveries: number
  /** The failure of the last batch it was in, when the worker saw it (not when the process died). */
  readonly lastError: string | null
}

export interface CrashCounterService {
  /** Counts one more delivery of each key; returns the counts. */
  readonly redelivered: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, Attempts>, CrashCounterError>
  /** Records why a batch with these messages failed (only on a failure: rare). */
  readonly failed: (keys: ReadonlyArray<string>, error: string) => Effect.Effect<void, CrashCounterError>
  /** Forgets the keys (their messages are settled). */
  readonly settled: (keys: ReadonlyArray<string>) => Effect.Effect<void, CrashCounterError>
}

const memory = (): CrashCounterService => {
  const rows = new Map<string, { deliveries: number; lastError: string | null }>()
  return {
    redelivered: (keys) =>
      Effect.sync(() => {
        const out = new Map<string, Attempts>()
        for (const key of new Set(keys)) {
          const row = rows.get(key) ?? { deliveries: 0, lastError: null }
          row.deliveries++
          rows.set(key, row)
          out.set(key, { ...row })
        }
        return out
      }),
    failed: (keys, error) =>
      Effect.sync(() => {
        for (const key of keys) rows.set(key, { deliveries: rows.get(key)?.deliveries ?? 0, lastError: error })
      }),
    settled: (keys) =>
      Effect.sync(() => {
        for (const key of keys) rows.delete(key)
      })
  }
}

export class CrashCounter extends Context.Reference<CrashCounter>()("OpsDesk/Worker/CrashCounter", {
  defaultValue: memory
}) {}

export const CrashCounterMemory = Layer.sync(CrashCounter, memory)

const LAST_ERROR_MAX = 1000

/** Rows of messages settled without their row being removed (a worker died in between) go after this. */
const STALE_AFTER = "7 days"

const COUNT_SQL = `
INSERT INTO delivery_attempts (message_key, deliveries, updated_at)
SELECT k, 1, now() FROM unnest($1::text[]) AS k
ON CONFLICT (message_key) DO UPDATE SET deliveries = delivery_attempts.deliveries + 1, updated_at = now()
RETURNING message_key, deliveries, last_error`

const FAILED_SQL = `
INSERT INTO delivery_attempts (message_key, deliveries, last_error, updated_at)
SELECT k, 0, $2, now() FROM unnest($1::text[]) AS k
ON CONFLICT (message_key) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()`

const SETTLED_SQL = `
DELETE FROM delivery_attempts
WHERE message_key = ANY($1::text[]) OR updated_at < now() - interval '${STALE_AFTER}'`

export const CrashCounterLive = Layer.effect(
  CrashCounter,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const failure = (what: string) => (e: Parameters<typeof describeSqlError>[0]) =>
      new CrashCounterError({ message: `${what}: ${describeSqlError(e)}` })
    const service: CrashCounterService = {
      redelivered: (keys) =>
        keys.length === 0
          ? Effect.succeed(new Map())
          : sql.unsafe<{ messageKey: string; deliveries: number; lastError: string | null }>(COUNT_SQL, [
            [...new Set(keys)]
          ]).pipe(
            Effect.map((rows) =>
              new Map(rows.map((r) => [r.messageKey, { deliveries: r.deliveries, lastError: r.lastError }]))
            ),
            Effect.mapError(failure("Counting redeliveries failed"))
          ),
      failed: (keys, error) =>
        keys.length === 0 ?
          Effect.void :
          sql.unsafe(FAILED_SQL, [[...new Set(keys)], error.slice(0, LAST_ERROR_MAX)]).pipe(
            Effect.asVoid,
            Effect.mapError(failure("Recording a batch failure failed"))
          ),
      settled: (keys) =>
        keys.length === 0 ? Effect.void : sql.unsafe(SETTLED_SQL, [[...new Set(keys)]]).pipe(
          Effect.asVoid,
          Effect.mapError(failure("Clearing redelivery counts failed"))
        )
    }
    return service
  })
)

/**
 * A message's key: its queue and its AMQP messageId (the relay sets it to the
 * eventId), else a hash of its body; each part cut so that a hostile id
 * cannot make a huge key.
 */
export const messageKey = (delivery: Delivery): string => {
  const id = delivery.messageId !== undefined && delivery.messageId.length > 0
    ? `id:${delivery.messageId.slice(0, 200)}`
    : `body:${createHash("sha256").update(delivery.body).digest("hex")}`
  return `${delivery.queue.slice(0, 255)}/${id}`
}
