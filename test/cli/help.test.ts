/**
 * Every `--help` page, found by walking the COMMANDS list of `opsdesk --help`:
 * a description, a usage line with the full command path, examples, the exit
 * codes, and no option without its own description or with @effect/cli's
 * "A user-defined piece of text.".
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ENVIRONMENT } from "../../src/Cli/Help.js"
import { opsdesk } from "./support.js"

const section = (page: string, title: string) => {
  const start = page.indexOf(`\n${title}\n`)
  if (start === -1) return undefined
  const rest = page.slice(start + title.length + 2)
  const end = rest.search(/\n[A-Z][A-Z ]+\n/)
  return end === -1 ? rest : rest.slice(0, end)
}

describe("opsdesk --help", () => {
  it.live("names the environment variables the CLI reads and how errors and JSON work", () =>
    Effect.gen(function*() {
      const root = yield* opsdesk(["--help"])
      expect(root.code).toBe(0)
      const env = section(root.stdout, "ENVIRONMENT")!
      for (const name of Object.keys(ENVIRONMENT)) expect(env).toContain(name)
      for (const name of ["DATABASE_URL", "AMQP_URL", "OPS_AMQP_URL", "NO_COLOR", "LOG_LEVEL"]) {
        expect(env).toContain(name)
      }
      expect(root.stdout).toContain("--json")
    }), 60_000)

  it.live(
    "every command's page: description, full usage path, examples, described options",
    () =>
      Effect.gen(function*() {
        const root = yield* opsdesk(["--help"])
        const commands = [...section(root.stdout, "COMMANDS")!.matchAll(/^ *- ([a-z]+(?: [a-z]+)*)/gm)].map((m) =>
          m[1]!
        )
        expect(commands).toEqual(
          expect.arrayContaining(["api", "dlq", "dlq list", "dlq replay", "dlq purge", "maintain"])
        )
        expect(commands.length).toBeGreaterThanOrEqual(12)
        const pages = yield* Effect.forEach(
          [[], ...commands.map((c) => c.split(" "))],
          (path) => Effect.map(opsdesk([...path, "--help"]), (run) => ({ path, run })),
          { concurrency: 3 }
        )
        for (const { path, run } of pages) {
          const page = run.stdout
          const name = ["opsdesk", ...path].join(" ")
          expect({ name, code: run.code }).toEqual({ name, code: 0 })
          expect(page).not.toContain("user-defined piece of text")
          expect(page).not.toContain("A true or false value")
          expect(section(page, "DESCRIPTION")?.trim(), name).toBeTruthy()
          expect(section(page, "USAGE"), name).toContain(`$ ${name}`)
          expect(section(page, "EXAMPLES"), name).toMatch(new RegExp(`\\$ ${name}\\b`))
          expect(section(page, "EXIT CODES"), name).toContain("2  usage error")
          // An option's block: its name line, then its description (not straight to the "optional" note).
          const options = section(page, "OPTIONS") ?? ""
          expect(options, name).not.toMatch(/^-[^\n]*\n\n {2}This setting is optional\./m)
        }
      }),
    300_000
  )
})
