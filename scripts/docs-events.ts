/**
 * `npm run docs:events`: writes the events contract into docs/ from the code
 * (src/Broker/AsyncApi.ts): docs/asyncapi.json, and docs/EVENTS.md, its
 * rendering for people. test/events/asyncapi.test.ts fails when either is
 * stale. `--check` only compares.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { eventsDocs } from "./lib/eventsDocs.js"

const check = process.argv.includes("--check")
let stale = 0
for (const [path, text] of Object.entries(eventsDocs())) {
  const url = new URL(`../${path}`, import.meta.url)
  let current = ""
  try {
    current = readFileSync(url, "utf8")
  } catch {
    // missing: written below
  }
  if (current === text) continue
  stale++
  if (check) console.error(`${path} is stale: run npm run docs:events`)
  else writeFileSync(url, text)
}
if (check && stale > 0) process.exit(1)
if (!check) console.log(stale === 0 ? "docs/asyncapi.json and docs/EVENTS.md are current" : `wrote ${stale} file(s)`)
