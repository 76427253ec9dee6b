/**
 * The verified-token LRU (src/Auth/Tokens.ts): a remembered token is still
 * refused once it expires, a changed token is never a hit, and the cache
 * stays within its capacity, evicting the least recently used token. It holds
 * a token's claims only: whether its user may still use it is Identity's
 * answer, on every request (test/security/identity.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { jwtSecrets } from "../../src/Auth/Secret.js"
import { makeVerifiedCache, Tokens } from "../../src/Auth/Tokens.js"

const claims = (userId: string) => ({ userId, version: 0, exp: 100 })
const subject = (id: string) => ({ id, username: `user-${id}`, role: "agent" as const, tokenVersion: 3 })

describe("verified-token cache", () => {
  it("a hit is checked against its expiry; capacity evicts the least recently used", () => {
    const cache = makeVerifiedCache(2)
    cache.set("a", claims("a"))
    cache.set("b", claims("b"))
    expect(cache.get("a", 99)?.userId).toBe("a") // "a" is now the most recently used
    cache.set("c", claims("c"))
    expect(cache.size).toBe(2)
    expect(cache.get("b", 99)).toBeUndefined() // evicted
    expect(cache.get("c", 99)?.userId).toBe("c")
    // jose's rule: expired once exp <= now; an expired entry is dropped.
    expect(cache.get("a", 100)).toBeUndefined()
    expect(cache.get("a", 50)).toBeUndefined()
  })

  it.live(
    "Tokens: a remembered token is refused once it expires; a tampered one is verified in full and refused",
    () =>
      Effect.gen(function*() {
        const tokens = yield* Tokens
        const id = crypto.randomUUID()
        const { accessToken } = yield* tokens.issue(subject(id))
        expect(yield* tokens.verify(accessToken)).toMatchObject({ userId: id, version: 3 })
        expect(tokens.remembered(accessToken)).toBeDefined()

        const [header, payload, signature] = accessToken.split(".")
        const tampered = `${header}.${payload}.${signature!.slice(0, -2)}${signature!.endsWith("AA") ? "BB" : "AA"}`
        expect(tokens.remembered(tampered)).toBeUndefined()
        expect(Exit.isFailure(yield* Effect.exit(tokens.verify(tampered)))).toBe(true)

        // Lifetime 2 s, in whole seconds: `exp` is 1 to 2 s away at issue (so the checks above cannot
        // race it, as a 1 s lifetime issued at x.999 could), and at most 3 s away.
        yield* Effect.sleep("3100 millis")
        expect(tokens.remembered(accessToken)).toBeUndefined()
        expect(Exit.isFailure(yield* Effect.exit(tokens.verify(accessToken)))).toBe(true)
      }).pipe(
        Effect.provide(
          Tokens.DefaultWithoutDependencies.pipe(Layer.provide(jwtSecrets(randomBytes(32).toString("hex"))))
        ),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["JWT_EXPIRES_IN_SECONDS", "2"]])))
      ),
    { timeout: 10_000 }
  )
})
