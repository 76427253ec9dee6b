/**
 * The audit trail: one `audit_log` row per write, inserted inside the write's
 * own transaction (so a rolled-back write leaves no audit row either).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export interface AuditEntry {
  readonly actorId: string | null
  /** `<entity>.<verb>`, e.g. `ticket.create`, `ticket.status_change`. */
  readonly action: string
  readonly entity: string
  readonly entityId: string
  readonly changes: unknown
}

export const recordAudit = (entry: AuditEntry) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO audit_log (actor_id, action, entity, entity_id, changes)
      VALUES (${entry.actorId}, ${entry.action}, ${entry.entity}, ${entry.entityId}, ${JSON.stringify(entry.changes ?? {})}::jsonb)`
  ).pipe(Effect.asVoid, Effect.withSpan("Audit.record", { attributes: { action: entry.action } }))
