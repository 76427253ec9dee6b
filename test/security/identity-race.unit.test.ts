/**
 * A user row read before a change made through this process, whose read
 * ends after it (the change's `forget` ran while the read was in flight),
 * must not be kept: Effect's `Cache` stores a lookup's result even when the
 * key was invalidated meanwhile, and without the change count
 * (src/Auth/Identity.ts, Admissions.epochOf) the logged-out token would be
 * let in for AUTH_USER_CACHE_MS more. The repo is a double whose first read
 * the test holds until after the logout.
 */
import { expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Either, Fiber, Layer, Option, Ref } from "effect"
import { Admissions } from "../../src/Auth/Admissions.js"
import { Identity } from "../../src/Auth/Identity.js"
import { AuthRepo, type IdentityRow } from "../../src/Auth/Repo.js"

const USER = "00000000-0000-4000-8000-000000000001"
const row = (tokenVersion: number): IdentityRow => ({
  id: USER,
  username: "u",
  role: "agent",
  active: true,
  tokenVersion
})
const claims = { userId: USER, version: 0, exp: Math.floor(Date.now() / 1000) + 600 }

it.live("a row read before a logout and stored after it does not let the old token in", () =>
  Effect.gen(function*() {
    const version = yield* Ref.make(0)
    const reading = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const reads = yield* Ref.make(0)
    const repo = Layer.succeed(
      AuthRepo,
      AuthRepo.make({
        findIdentity: () =>
          Effect.gen(function*() {
            const seen = row(yield* Ref.get(version)) // read now, answered later: a query in flight
            if ((yield* Ref.getAndUpdate(reads, (n) => n + 1)) === 0) {
              yield* Deferred.succeed(reading, undefined)
              yield* Deferred.await(release)
            }
            return Option.some(seen)
          }),
        findCredentials: () => Effect.die("not used"),
        logoutEverywhere: () => Effect.die("not used"),
        upgradeHash: () => Effect.die("not used")
      } as unknown as AuthRepo)
    )
    yield* Effect.gen(function*() {
      const identity = yield* Identity
      const resolve = Effect.map(Effect.either(identity.resolve(claims)), Either.isRight)
      const first = yield* Effect.fork(resolve)
      yield* Deferred.await(reading)
      // The logout: the version bumped in the database, then this process forgets the user.
      yield* Ref.set(version, 1)
      yield* identity.forget(USER)
      yield* Deferred.succeed(release, undefined)
      // The request that began before the logout may pass; none after it.
      yield* Fiber.join(first)
      expect(yield* resolve).toBe(false)
      expect(yield* resolve).toBe(false)
    }).pipe(
      Effect.provide(
        Identity.DefaultWithoutDependencies.pipe(Layer.provideMerge(Admissions.Default), Layer.provide(repo))
      ),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["AUTH_USER_CACHE_MS", "60000"]])))
    )
  }))
