/**
 * Each entrypoint's bundle (scripts/build.mjs) holds its own process only:
 * code a process loads costs it memory for as long as it runs. The worker
 * carrying the API (its HTTP server and the 3.4 MB API reference page) was
 * ~40 MB of the worker's RSS while draining. This bundles each entrypoint as
 * the build does and looks at what went in.
 */
import { describe, expect, it } from "@effect/vitest"
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

const inputsOf = async (entry: string) => {
  const result = await build({
    entryPoints: [`src/bin/${entry}.ts`],
    absWorkingDir: root,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    metafile: true,
    outfile: `dist/${entry}.mjs`,
    external: ["@node-rs/argon2"],
    logLevel: "silent"
  })
  const output = Object.values(result.metafile.outputs)[0]!
  return Object.keys(output.inputs).filter((path) => output.inputs[path]!.bytesInOutput > 0)
}

const API = ["src/App/ApiProcess.ts", "src/App/Server.ts", "httpApiScalar"]
const WORKER = ["src/App/WorkerProcess.ts", "src/Worker/Consumer.ts", "src/Notifications/Dispatcher.ts"]
const RELAY = ["src/App/RelayProcess.ts"]

const holds = (inputs: ReadonlyArray<string>, part: string) => inputs.some((path) => path.includes(part))

describe("entrypoint bundles", () => {
  it("the worker's holds the worker and not the API or the relay process", async () => {
    const inputs = await inputsOf("worker")
    for (const part of WORKER) expect(holds(inputs, part), part).toBe(true)
    for (const part of [...API, ...RELAY]) expect(holds(inputs, part), part).toBe(false)
  }, 60_000)

  it("the relay's holds the relay and not the API or the worker", async () => {
    const inputs = await inputsOf("relay")
    expect(holds(inputs, "src/Outbox/Relay.ts")).toBe(true)
    for (const part of [...API, ...WORKER]) expect(holds(inputs, part), part).toBe(false)
  }, 60_000)

  it("the API's holds the API and not the worker", async () => {
    const inputs = await inputsOf("api")
    for (const part of API) expect(holds(inputs, part), part).toBe(true)
    for (const part of WORKER) expect(holds(inputs, part), part).toBe(false)
  }, 60_000)
})
