/**
 * The webhooks' health for the ops dashboard: the subscriptions OpsDesk
 * disabled (a run of failures, or a 410) and nobody re-enabled yet.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { traced } from "../Observability/Span.js"

/** At most this many are named; `disabled` counts them all. */
const LISTED = 10

export interface DisabledWebhooks {
  readonly disabled: number
  readonly items: ReadonlyArray<{
    readonly id: string
    readonly url: string
    readonly disabledAt: string
    readonly disabledReason: string | null
  }>
}

export const readDisabledWebhooks: Effect.Effect<DisabledWebhooks, unknown, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      readonly id: string
      readonly url: string
      readonly disabledAt: Date
      readonly disabledReason: string | null
      readonly total: number
    }>`SELECT id, url, disabled_at, disabled_reason, count(*) OVER ()::int AS total FROM webhook_subscriptions
      WHERE NOT active AND disabled_at IS NOT NULL ORDER BY disabled_at DESC LIMIT ${LISTED}`
    return {
      disabled: rows[0]?.total ?? 0,
      items: rows.map((r) => ({
        id: r.id,
        url: r.url,
        disabledAt: r.disabledAt.toISOString(),
        disabledReason: r.disabledReason
      }))
    }
  }
).pipe(traced("Webhooks.readDisabled"))
