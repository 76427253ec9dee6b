/**
 * The tests' broker administration (test/support/BrokerAdmin.ts) both ways:
 * `rabbitmqctl` (a broker on this machine) and the management HTTP API (a
 * broker in a container, where there is no `rabbitmqctl`). Each makes a vhost
 * with OpsDesk's broker users in it, lets them connect, closes their
 * connections from the broker's side, and deletes the vhost. The whole suite
 * also runs on the HTTP path with TEST_RABBITMQ_ADMIN=http.
 */
import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import * as BrokerAdmin from "../support/BrokerAdmin.js"
import { brokerUserUrl } from "../support/Env.js"

const exec = promisify(execFile)
const SCRIPT = new URL("../../scripts/broker-users.sh", import.meta.url).pathname

const closed = (connection: amqp.ChannelModel) =>
  new Promise<void>((resolve) => {
    // The broker's close arrives as an error first.
    connection.on("error", () => undefined)
    connection.once("close", () => resolve())
  })

describe.each(["rabbitmqctl", "http"] as const)("test vhosts through %s", (via) => {
  it("makes a vhost with OpsDesk's users, closes its connections, deletes it", async () => {
    const vhost = `opsdesk_test_setup_${via}_${process.pid}`
    // A vhost that does not exist deletes quietly (every test file starts so).
    await BrokerAdmin.deleteVhost(vhost, via)
    const connections: Array<amqp.ChannelModel> = []
    try {
      const { stdout } = await exec("bash", [SCRIPT, "--print", "--no-env-files", vhost], {
        timeout: 30_000,
        env: { ...process.env, BROKER_USERS_DIR: BrokerAdmin.BROKER_USERS_DIR }
      })
      const definitions = JSON.parse(stdout) as { permissions: Array<Record<string, string>> }
      definitions.permissions.push({ user: BrokerAdmin.ADMIN_USER, vhost, configure: ".*", write: ".*", read: ".*" })
      await BrokerAdmin.importDefinitions(definitions, via)
      expect(await BrokerAdmin.listVhosts(via)).toContain(vhost)

      // The administrator may declare anything there; the worker's user may declare its queues.
      const admin = await amqp.connect(BrokerAdmin.vhostUrl(vhost))
      connections.push(admin)
      await (await admin.createChannel()).assertQueue("setup.probe", { autoDelete: true })
      const worker = await amqp.connect(brokerUserUrl(BrokerAdmin.vhostUrl(vhost), "worker"))
      connections.push(worker)
      await (await worker.createChannel()).assertQueue("ticket.created.queue", { durable: true })

      const bothClosed = Promise.all([closed(admin), closed(worker)])
      await BrokerAdmin.closeAllConnections(vhost, "test: closed by the broker", via)
      await bothClosed
    } finally {
      await Promise.all(connections.map((c) => c.close().catch(() => undefined)))
      await BrokerAdmin.deleteVhost(vhost, via)
    }
    expect(await BrokerAdmin.listVhosts(via)).not.toContain(vhost)
  }, 120_000)
})
