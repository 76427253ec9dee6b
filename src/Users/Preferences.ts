/**
 * A user's notification preferences: whether they are told by email and in
 * the app (`user_preferences`, migration 0009; no row: both on). The worker's
 * claim statement reads the same table when it decides who is told on which
 * channel (src/Notifications/Recipients.ts), so a change applies to events
 * claimed after it commits.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { Timestamp } from "../Kit/Schemas.js"
import { traced } from "../Observability/Span.js"

export const Preferences = Schema.Struct({
  email: Schema.Boolean.annotations({ description: "Notifications by email (to the user's `email`, when set)" }),
  inApp: Schema.Boolean.annotations({ description: "In-app notifications (`/v1/notifications`, the stream)" }),
  updatedAt: Schema.NullOr(Timestamp).annotations({ description: "Last change; null: never changed (all on)" })
}).annotations({ identifier: "NotificationPreferences" })
export type Preferences = typeof Preferences.Type

export const UpdatePreferencesRequest = Schema.Struct({
  email: Schema.optional(Schema.Boolean),
  inApp: Schema.optional(Schema.Boolean)
}).pipe(
  Schema.filter((p) => p.email !== undefined || p.inApp !== undefined, {
    message: () => "at least one of email, inApp is required"
  })
).annotations({ identifier: "UpdatePreferencesRequest" })
export type UpdatePreferencesRequest = typeof UpdatePreferencesRequest.Type

interface PreferencesRow {
  readonly email: boolean
  readonly inApp: boolean
  readonly updatedAt: Date | null
}

const toPreferences = (row: PreferencesRow | undefined): Preferences => ({
  email: row?.email ?? true,
  inApp: row?.inApp ?? true,
  updatedAt: row?.updatedAt?.toISOString() ?? null
})

export class UserPreferences extends Effect.Service<UserPreferences>()("OpsDesk/Users/Preferences", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const get = (userId: string) =>
      sql<PreferencesRow>`SELECT email, in_app, updated_at FROM user_preferences WHERE user_id = ${userId}`.pipe(
        Effect.map((rows) => toPreferences(rows[0])),
        Effect.orDie,
        traced("UserPreferences.get")
      )

    /** One statement: what the request leaves out keeps its stored value (or its default, on). */
    const update = (userId: string, change: UpdatePreferencesRequest) =>
      sql<PreferencesRow>`INSERT INTO user_preferences (user_id, email, in_app, updated_at)
        VALUES (${userId}, ${change.email ?? true}, ${change.inApp ?? true}, now())
        ON CONFLICT (user_id) DO UPDATE SET
          email = ${change.email === undefined ? sql`user_preferences.email` : sql`EXCLUDED.email`},
          in_app = ${change.inApp === undefined ? sql`user_preferences.in_app` : sql`EXCLUDED.in_app`},
          updated_at = now()
        RETURNING email, in_app, updated_at`.pipe(
        Effect.map((rows) => toPreferences(rows[0])),
        Effect.orDie,
        traced("UserPreferences.update")
      )

    return { get, update } as const
  })
}) {}
