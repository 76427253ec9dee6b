/** Small Schemas shared by several features. */
import { Schema } from "effect"

/** Timestamps travel as ISO-8601 strings in UTC, as in the domain events. */
export const Timestamp = Schema.String.annotations({ format: "date-time", description: "ISO-8601 timestamp (UTC)" })
