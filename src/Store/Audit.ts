/**
 * The audit trail: one `audit_log` row per write, inserted inside the write's
 * own transaction (so a rolled-back write leaves no audit row either). This is
 * the only place that writes the table: `recordAudit` as a statement of its
 * own, `auditInsert` as a data-modifying CTE of a repo's larger statement.
 */
import { SqlClient, Statement } from "@effect/sql"
import { Effect } from "effect"
import { traced } from "../Observability/Span.js"

/** A value of the row, or an SQL expression over the CTE the row is inserted from. */
export type Sourced<A> = A | Statement.Fragment

export interface AuditEntry {
  readonly actorId: Sourced<string | null>
  /** `<entity>.<verb>`, e.g. `ticket.create`, `ticket.status_change`. */
  readonly action: string
  readonly entity: string
  readonly entityId: Sourced<string>
  /** Any JSON value, or a jsonb expression. */
  readonly changes: unknown
}

/**
 * The INSERT of one audit row. With `from` (a CTE of the same statement), the
 * row is inserted once per row of it, and `Sourced` values may name its columns.
 * Values of non-text columns are cast: a `SELECT` list does not take the columns' types.
 */
export const auditInsert = (sql: SqlClient.SqlClient, entry: AuditEntry, from?: Statement.Fragment) => {
  const changes = Statement.isFragment(entry.changes) ? entry.changes : sql`${JSON.stringify(entry.changes ?? {})}`
  return sql`INSERT INTO audit_log (actor_id, action, entity, entity_id, changes)
    SELECT ${entry.actorId}::uuid, ${entry.action}, ${entry.entity}, ${entry.entityId}::text, ${changes}::jsonb${
    from === undefined ? sql`` : sql` FROM ${from}`
  }`
}

export const recordAudit = (entry: AuditEntry) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => auditInsert(sql, entry)).pipe(
    Effect.asVoid,
    traced("Audit.record", { attributes: { action: entry.action } })
  )
