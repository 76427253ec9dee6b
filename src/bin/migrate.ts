/** Applies pending migrations and makes sure the admin user exists: `npm run migrate`. */
import { NodeRuntime } from "@effect/platform-node"
import { migrateProgram } from "../App/MigrateProcess.js"

migrateProgram.pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
