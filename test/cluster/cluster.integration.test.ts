/**
 * OpsDesk on a real three-node RabbitMQ cluster (scripts/cluster.sh) with
 * QUEUE_TYPE=quorum: a short run of `npm run chaos:cluster`. The API and the
 * worker (production bundles) get AMQP_URL listing the three nodes; the node
 * that leads the event queues is killed with SIGKILL in the middle of a load
 * of writes and brought back. The run checks 0 lost, 0 doubled, every write
 * answered 201, the known dead letters put in tickets.dlq beforehand all
 * still there, and `opsdesk dlq list` run while the node is down listing
 * them. A cluster that was running already is reused and left running;
 * otherwise the run starts one and stops it (its data directory removed).
 *
 * Skipped, saying why, only where the RabbitMQ server binaries are missing.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { TEST_DATABASE_URL } from "../support/testDatabase.js"

const RABBITMQ_BIN_DIR = process.env.RABBITMQ_BIN_DIR ?? "/usr/lib/rabbitmq/bin"
const haveRabbitMq = existsSync(`${RABBITMQ_BIN_DIR}/rabbitmq-server`)
if (!haveRabbitMq) {
  console.warn(
    `test/cluster/cluster.integration.test.ts skipped: no RabbitMQ server binaries in ${RABBITMQ_BIN_DIR} ` +
      "(install rabbitmq-server, or set RABBITMQ_BIN_DIR)"
  )
}

/** The harness's database: beside the test database, on the same server. */
const testDb = new URL(TEST_DATABASE_URL)
const chaosDb = `${testDb.pathname.slice(1).replace(/[^a-z0-9_]/g, "_")}_chaos`
testDb.pathname = ""

describe.skipIf(!haveRabbitMq)("RabbitMQ cluster (short chaos:cluster run)", () => {
  it("loses the leader node under load: 0 lost, 0 doubled, writes never fail, DLQ intact", async () => {
    const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>(
      (resolve) => {
        const child = execFile(
          process.execPath,
          [
            "--import",
            "tsx",
            "scripts/chaos-cluster.ts",
            "--writes",
            "300",
            "--rate",
            "25",
            "--kills",
            "1",
            "--down-s",
            "3",
            "--dead-letters",
            "5",
            "--drain-timeout-s",
            "120",
            "--db",
            chaosDb
          ],
          {
            env: { ...process.env, CHAOS_PG_BASE: testDb.toString().replace(/\/$/, "") },
            maxBuffer: 64 * 1024 * 1024,
            // Minutes on a quiet machine; far more on a loaded one (node boots dominate). The harness bounds its own waits.
            timeout: 860_000
          },
          (_error, out, err) => resolve({ stdout: out, stderr: err, code: child.exitCode })
        )
      }
    )
    const report = `${stdout}\n${stderr}`
    // The run's table, in the suite's output.
    console.log(stdout.trim())
    expect(stdout, report).toContain("OpsDesk on a RabbitMQ cluster")
    expect(stdout, report).toMatch(/^lost\s+0$/m)
    expect(stdout, report).toMatch(/^doubled\s+0$/m)
    expect(stdout, report).toMatch(/^writes failed\s+0$/m)
    expect(stdout, report).toMatch(/^DLQ: known dead letters found\s+5 of 5 \(0 other\)$/m)
    // Both processes connected again after the kill, to another node.
    expect(stdout, report).toMatch(/api opsdesk-publisher: amqp:\/\/\S+ -> amqp:\/\/\S+/)
    expect(stdout, report).toMatch(/worker opsdesk-worker: amqp:\/\/\S+ -> amqp:\/\/\S+/)
    expect(stdout, report).toMatch(/^opsdesk dlq list, node down\s+all 5 listed$/m)
    expect(stdout, report).toMatch(/^7 passed, 0 failed$/m)
    expect(code, report).toBe(0)
  }, 900_000)
})
