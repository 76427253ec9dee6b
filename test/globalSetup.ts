/**
 * Runs once before the suite: builds dist/ (the production bundles, which some
 * tests start as child processes), and makes sure the test database exists. Tests use
 * their own database (TEST_DATABASE_URL, default `opsdesk_test`), so an API or
 * worker running on the development database (`opsdesk`) never publishes or
 * consumes a test's rows. Each test file applies migrations itself.
 */
import { execFileSync } from "node:child_process"
import pg from "pg"
import { TEST_DATABASE_URL } from "./support/testDatabase.js"

export default async function setup() {
  execFileSync(process.execPath, ["scripts/build.mjs"], { stdio: "inherit" })
  const url = new URL(TEST_DATABASE_URL)
  const name = url.pathname.slice(1)
  const admin = new URL(url)
  admin.pathname = "/postgres"
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])
    if (rowCount === 0) await client.query(`CREATE DATABASE "${name.replace(/"/g, "")}"`)
  } catch (e) {
    // Two runs racing to create it: the other one won.
    if (!(e instanceof Error && /already exists/.test(e.message))) throw e
  } finally {
    await client.end()
  }
}
