/**
 * The tests' RabbitMQ administration: creating and deleting their vhosts,
 * importing OpsDesk's broker users into them, closing connections. Through
 * `rabbitmqctl` where it is installed (a broker on this machine), else through
 * the management plugin's HTTP API (a broker in a container, compose's).
 * `TEST_RABBITMQ_ADMIN=http` or `=rabbitmqctl` forces one (each function also takes it).
 *
 * The administrator: AMQP_URL when set, else the `admin.env` that
 * scripts/broker-users.sh writes when it has an administrator (compose has no
 * `guest`: `npm run services -- --docker` copies it), else guest/guest.
 * Imports nothing from src/ (test/support/ApiProcess.ts uses it too).
 */
import { execFile, spawn } from "node:child_process"
import { accessSync, constants, existsSync, readFileSync } from "node:fs"
import * as Path from "node:path"
import { promisify } from "node:util"

const exec = promisify(execFile)

export const BROKER_USERS_DIR = process.env.BROKER_USERS_DIR ?? new URL("../../.broker-users", import.meta.url).pathname

const fromAdminEnv = (): string | undefined => {
  const file = Path.join(BROKER_USERS_DIR, "admin.env")
  if (!existsSync(file)) return undefined
  const line = readFileSync(file, "utf8").split("\n").find((l) => l.startsWith("AMQP_URL="))
  // A cluster's env file lists every node: the first is enough here.
  return line?.slice("AMQP_URL=".length).split(",")[0]
}

const adminUrl = new URL(process.env.AMQP_URL ?? fromAdminEnv() ?? "amqp://guest:guest@127.0.0.1:5672")
adminUrl.pathname = "/"

/** The administrator's AMQP URL, without a vhost. */
export const AMQP_BASE = adminUrl.toString().replace(/\/$/, "")
/** The administrator's user name (it gets every right on each test vhost). */
export const ADMIN_USER = decodeURIComponent(adminUrl.username)

/** The administrator's AMQP URL of `vhost`. */
export const vhostUrl = (vhost: string) => `${AMQP_BASE}/${encodeURIComponent(vhost)}`

const onPath = (command: string) =>
  (process.env.PATH ?? "").split(Path.delimiter).some((dir) => {
    try {
      accessSync(Path.join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

export type AdminVia = "rabbitmqctl" | "http"

const chosen = (): AdminVia => {
  const forced = process.env.TEST_RABBITMQ_ADMIN
  if (forced === "http" || forced === "rabbitmqctl") return forced
  if (forced !== undefined && forced !== "") {
    throw new Error(`TEST_RABBITMQ_ADMIN must be http or rabbitmqctl, not ${forced}`)
  }
  return onPath("rabbitmqctl") ? "rabbitmqctl" : "http"
}

/** How the tests administer the broker (see the module's comment). */
export const ADMIN_VIA: AdminVia = chosen()

/** The management HTTP API: RABBITMQ_MANAGEMENT_URL, else port 15672 of the AMQP host. */
export const MANAGEMENT_URL = (process.env.RABBITMQ_MANAGEMENT_URL ?? `http://${adminUrl.hostname}:15672`).replace(
  /\/$/,
  ""
)

const rabbitmqctl = async (...args: Array<string>) => {
  await exec("rabbitmqctl", ["-q", ...args], { timeout: 30_000 })
}

const authorization = `Basic ${
  Buffer.from(`${ADMIN_USER}:${decodeURIComponent(adminUrl.password)}`).toString("base64")
}`

/** One management API call; `okStatuses` beyond 2xx are accepted too (404 on a delete). */
const management = async (
  method: string,
  path: string,
  body?: unknown,
  okStatuses: ReadonlyArray<number> = []
): Promise<unknown> => {
  const response = await fetch(`${MANAGEMENT_URL}/api${path}`, {
    method,
    headers: { authorization, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000)
  })
  const text = await response.text()
  if (!response.ok && !okStatuses.includes(response.status)) {
    throw new Error(`RabbitMQ management ${method} ${path}: ${response.status} ${text.slice(0, 300)}`)
  }
  return text === "" ? undefined : JSON.parse(text)
}

const vhostPath = (vhost: string) => encodeURIComponent(vhost)

/** Deletes `vhost` with everything in it; a missing one is fine. */
export const deleteVhost = async (vhost: string, via: AdminVia = ADMIN_VIA): Promise<void> => {
  if (via === "rabbitmqctl") {
    await rabbitmqctl("delete_vhost", vhost).catch(() => undefined)
  } else {
    await management("DELETE", `/vhosts/${vhostPath(vhost)}`, undefined, [404])
  }
}

/** Creates `vhost` and gives the administrator every right on it. */
export const addVhost = async (vhost: string, via: AdminVia = ADMIN_VIA): Promise<void> => {
  if (via === "rabbitmqctl") {
    await rabbitmqctl("add_vhost", vhost)
    await rabbitmqctl("set_permissions", "-p", vhost, ADMIN_USER, ".*", ".*", ".*")
  } else {
    await management("PUT", `/vhosts/${vhostPath(vhost)}`, {})
    await management("PUT", `/permissions/${vhostPath(vhost)}/${encodeURIComponent(ADMIN_USER)}`, {
      configure: ".*",
      write: ".*",
      read: ".*"
    })
  }
}

/** Imports broker definitions (vhosts, users, permissions), as `rabbitmqctl import_definitions` does. */
export const importDefinitions = async (definitions: unknown, via: AdminVia = ADMIN_VIA): Promise<void> => {
  if (via === "http") {
    await management("POST", "/definitions", definitions)
    return
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn("rabbitmqctl", ["-q", "import_definitions"], { stdio: ["pipe", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("error", reject)
    child.once(
      "exit",
      (code) => code === 0 ? resolve() : reject(new Error(`import_definitions failed (${code}): ${stderr}`))
    )
    child.stdin.end(JSON.stringify(definitions))
  })
}

/** Closes every client connection on `vhost` (the broker's side of a network failure). */
export const closeAllConnections = async (vhost: string, reason: string, via: AdminVia = ADMIN_VIA): Promise<void> => {
  if (via === "rabbitmqctl") {
    await rabbitmqctl("close_all_connections", "-p", vhost, reason)
    return
  }
  const list = async () =>
    (await management("GET", `/vhosts/${vhostPath(vhost)}/connections?columns=name`) as
      | Array<{ readonly name: string }>
      | undefined) ?? []
  // The API lists a connection once the broker's statistics have seen it (every 5 s by default): the callers
  // close the connections of a running process, so wait for them to show (15 s at most).
  let connections = await list()
  for (let i = 0; connections.length === 0 && i < 60; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    connections = await list()
  }
  await Promise.all(
    connections.map(({ name }) =>
      fetch(`${MANAGEMENT_URL}/api/connections/${encodeURIComponent(name)}`, {
        method: "DELETE",
        // The reason the client sees in its connection.close frame.
        headers: { authorization, "x-reason": reason },
        signal: AbortSignal.timeout(30_000)
      }).then((r) => r.body?.cancel())
    )
  )
}

/** The broker's vhosts. */
export const listVhosts = async (via: AdminVia = ADMIN_VIA): Promise<ReadonlyArray<string>> => {
  if (via === "rabbitmqctl") {
    const { stdout } = await exec("rabbitmqctl", ["-q", "list_vhosts", "name"], { timeout: 30_000 })
    return stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "" && l !== "name")
  }
  const vhosts = await management("GET", "/vhosts?columns=name") as Array<{ readonly name: string }>
  return vhosts.map((v) => v.name)
}
