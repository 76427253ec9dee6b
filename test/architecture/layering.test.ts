/**
 * The lint rules that hold the architecture (eslint.config.mjs) must keep
 * firing: a resolver or config change that silently disables them would leave
 * `npm run lint` green while imports run against the layering. Each case lints
 * a snippet as if it were a file at the given path.
 */
import { describe, expect, it } from "@effect/vitest"
import { ESLint } from "eslint"
import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const eslint = new ESLint({ cwd: root })

const ARCHITECTURE_RULES = new Set([
  "import-x/no-restricted-paths",
  "import-x/no-cycle",
  "import-x/no-unresolved",
  "no-restricted-imports",
  "no-restricted-syntax"
])

/** The architecture rules `code` breaks, as `rule` strings, when it lives at `filePath`. */
const violations = async (filePath: string, code: string) => {
  const [result] = await eslint.lintText(code, { filePath })
  return (result?.messages ?? []).flatMap((m) => m.ruleId && ARCHITECTURE_RULES.has(m.ruleId) ? [m.ruleId] : [])
}

describe("architecture lint rules", () => {
  it("reports an import from a higher layer (infrastructure importing a feature)", async () => {
    const found = await violations(
      "src/Store/X.ts",
      "import { Tickets } from \"../Tickets/Tickets.js\"\n\nexport const x = Tickets\n"
    )
    expect(found).toContain("import-x/no-restricted-paths")
  })

  it("reports an entrypoint imported from the composition root", async () => {
    const found = await violations("src/Cli/X.ts", "import \"../bin/api.js\"\n\nexport const x = 1\n")
    expect(found).toContain("import-x/no-restricted-paths")
  })

  it("accepts imports of the own folder and of lower layers", async () => {
    const found = await violations(
      "src/Tickets/X.ts",
      [
        "import { describe } from \"../Kit/Cause.js\"",
        "import { PgLive } from \"../Store/Sql.js\"",
        "import { HttpPort } from \"../Config.js\"",
        "import { TicketsApi } from \"./Api.js\"",
        "",
        "export const x = [describe, PgLive, HttpPort, TicketsApi]",
        ""
      ].join("\n")
    )
    expect(found).toEqual([])
  })

  it("reports amqplib outside src/Broker, type imports included", async () => {
    const found = await violations(
      "src/Tickets/X.ts",
      "import type { Channel } from \"amqplib\"\n\nexport type X = Channel\n"
    )
    expect(found).toContain("no-restricted-imports")
    expect(await violations("src/Broker/X.ts", "import type { Channel } from \"amqplib\"\n\nexport type X = Channel\n"))
      .toEqual([])
  })

  it("reports configuration read outside src/Config.ts, and allows Config's types and constants", async () => {
    const reads = await violations(
      "src/Tickets/X.ts",
      "import { Config } from \"effect\"\n\nexport const x = Config.string(\"X\")\nexport const y = process.env.Y\n"
    )
    expect(reads).toEqual(["no-restricted-syntax", "no-restricted-syntax"])
    const uses = await violations(
      "src/Store/X.ts",
      "import { Config } from \"effect\"\n\nexport const n: Config.Config<number> = Config.succeed(1)\n"
    )
    expect(uses).toEqual([])
  })

  it("reports an import cycle", async () => {
    // src/Logging.ts imports src/Config.ts, so Config importing Logging closes a cycle.
    const found = await violations(
      "src/Config.ts",
      "import { LoggingLive } from \"./Logging.js\"\n\nexport const x = LoggingLive\n"
    )
    expect(found).toContain("import-x/no-cycle")
  })

  it("places every folder and file under src/ in a layer", async () => {
    const config = await eslint.calculateConfigForFile("src/Config.ts")
    const zones: ReadonlyArray<{ target: Array<string>; from: Array<string> }> =
      config.rules["import-x/no-restricted-paths"][1].zones
    const layered = new Set(zones.flatMap((zone) => [...zone.target, ...zone.from]))
    const unplaced = readdirSync(new URL("../../src", import.meta.url)).map((name) => `src/${name}`)
      .filter((path) => !layered.has(path))
    expect(unplaced).toEqual([])
  })
})
