/**
 * The tokens the Authentication middleware let in (src/Auth/Admissions.ts),
 * which the HTTP front cache answers: an admission never outlives its token's
 * `exp` nor AUTH_USER_CACHE_MS, `forgetUser` drops only that user's tokens
 * and voids the checks under way for them, and AUTH_USER_CACHE_MS=0 admits
 * nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { Admissions } from "../../src/Auth/Admissions.js"

const admissions = (windowMs: number) =>
  Admissions.pipe(
    Effect.provide(Admissions.Default),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["AUTH_USER_CACHE_MS", String(windowMs)]])))
  )

const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s

describe("Admissions", () => {
  it.effect("an admitted token is found, with a digest and never the token itself", () =>
    Effect.gen(function*() {
      const a = yield* admissions(60_000)
      a.admit("token-1", "user-1", inSeconds(3600), a.epochOf("user-1"))
      const found = a.find("token-1")
      expect(found?.userId).toBe("user-1")
      expect(found?.digest).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(JSON.stringify(found)).not.toContain("token-1")
      expect(a.find("token-2")).toBeUndefined()
    }))

  it.effect("an admission ends with its token's exp, however long the window", () =>
    Effect.gen(function*() {
      const a = yield* admissions(60_000)
      a.admit("expired", "user-1", inSeconds(-1), a.epochOf("user-1"))
      expect(a.find("expired")).toBeUndefined()
      a.admit("soon", "user-1", inSeconds(5), a.epochOf("user-1"))
      expect(a.find("soon")!.until).toBeLessThanOrEqual(inSeconds(5) * 1000)
    }))

  it.effect("an admission ends with the window, however long the token", () =>
    Effect.gen(function*() {
      const a = yield* admissions(1000)
      const before = Date.now()
      a.admit("token", "user-1", inSeconds(3600), a.epochOf("user-1"))
      expect(a.find("token")!.until).toBeLessThanOrEqual(Date.now() + 1000)
      expect(a.find("token")!.until).toBeGreaterThanOrEqual(before + 1000)
    }))

  it.effect("forgetUser drops that user's tokens only", () =>
    Effect.gen(function*() {
      const a = yield* admissions(60_000)
      a.admit("a1", "alice", inSeconds(3600), a.epochOf("alice"))
      a.admit("a2", "alice", inSeconds(3600), a.epochOf("alice"))
      a.admit("b1", "bob", inSeconds(3600), a.epochOf("bob"))
      a.forgetUser("alice")
      expect([a.find("a1"), a.find("a2")]).toEqual([undefined, undefined])
      expect(a.find("b1")?.userId).toBe("bob")
    }))

  it.effect("a token whose check began before its user changed is not admitted (the check read the old user)", () =>
    Effect.gen(function*() {
      const a = yield* admissions(60_000)
      const began = a.epochOf("alice")
      a.forgetUser("alice") // a logout through this process while the check was under way
      a.admit("late", "alice", inSeconds(3600), began)
      expect(a.find("late")).toBeUndefined()
      a.admit("after", "alice", inSeconds(3600), a.epochOf("alice"))
      expect(a.find("after")?.userId).toBe("alice")
    }))

  it.effect("AUTH_USER_CACHE_MS=0 admits nothing", () =>
    Effect.gen(function*() {
      const a = yield* admissions(0)
      a.admit("token", "user-1", inSeconds(3600), a.epochOf("user-1"))
      expect(a.find("token")).toBeUndefined()
    }))
})
