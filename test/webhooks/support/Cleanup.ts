/** Removes what a webhook test made: its subscriptions with their deliveries and audit rows. */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const deleteSubscriptions = (ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (ids.length === 0) return
    const sql = yield* SqlClient.SqlClient
    yield* sql`DELETE FROM deliveries WHERE subscription_id IN ${sql.in(ids)}`
    yield* sql`DELETE FROM webhook_subscriptions WHERE id IN ${sql.in(ids)}`
    yield* sql`DELETE FROM audit_log WHERE entity = 'webhook_subscription' AND entity_id IN ${sql.in(ids)}`
  }).pipe(Effect.orDie)

/** Tracks subscription ids and deletes them (with everything they caused) when the scope closes. */
export const trackSubscriptions = Effect.gen(function*() {
  const ids: Array<string> = []
  yield* Effect.addFinalizer(() => deleteSubscriptions(ids))
  return (id: string) => void ids.push(id)
})
