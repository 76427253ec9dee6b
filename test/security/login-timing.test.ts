/**
 * Login latency does not reveal whether a username exists: the median time of
 * a login for an unknown username and of a wrong password for an existing one
 * are within a factor of two (both run one scrypt check, which dominates).
 * A statistical comparison of the two medians, interleaved so that machine
 * load affects both alike; nothing is asserted about absolute speed.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeFixtures, suffix } from "../api/support/Fixtures.js"
import { apiWithOwnThrottle, NO_THROTTLE } from "../support/LoginThrottle.js"
import { rawRequest, serverPort } from "../support/RawHttp.js"

const ROUNDS = 20
const WARM_UP = 3

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

layer(apiWithOwnThrottle("timing", NO_THROTTLE), { excludeTestServices: true, timeout: "60 seconds" })(
  "login timing",
  (it) => {
    it.scoped("an unknown username and a wrong password take the same time (median ratio within 0.5–2)", () =>
      Effect.gen(function*() {
        const fx = yield* makeFixtures
        const user = yield* fx.user("customer")
        const port = yield* serverPort
        const timeLogin = (username: string) =>
          Effect.gen(function*() {
            const started = process.hrtime.bigint()
            const r = yield* rawRequest(port, {
              method: "POST",
              path: "/v1/auth/login",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ username, password: "not-the-password" })
            })
            expect(r.status).toBe(401)
            return Number(process.hrtime.bigint() - started) / 1e6
          })
        const unknown: Array<number> = []
        const existing: Array<number> = []
        for (let i = 0; i < WARM_UP + ROUNDS; i++) {
          // Alternate which goes first, so neither always follows the other.
          const ghost = `nobody_${suffix()}`
          const unknownFirst = i % 2 === 0
          const a = yield* timeLogin(unknownFirst ? ghost : user.username)
          const b = yield* timeLogin(unknownFirst ? user.username : ghost)
          const pair = unknownFirst ? [a, b] : [b, a]
          if (i >= WARM_UP) {
            unknown.push(pair[0]!)
            existing.push(pair[1]!)
          }
        }
        const ratio = median(unknown) / median(existing)
        const report = `median unknown ${median(unknown).toFixed(1)} ms, existing ${
          median(existing).toFixed(1)
        } ms, ratio ${ratio.toFixed(2)}`
        expect(ratio, report).toBeGreaterThanOrEqual(0.5)
        expect(ratio, report).toBeLessThanOrEqual(2)
      }))
  }
)
