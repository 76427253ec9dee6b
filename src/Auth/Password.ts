/**
 * Password hashing: Argon2id (@node-rs/argon2) at OWASP's recommended cost
 * (m = 19 MiB, t = 2, p = 1), stored in the PHC string format, which embeds
 * the parameters and salt so the cost can be raised later. Hashes written by
 * earlier versions (`scrypt$N$r$p$salt$hash`, node:crypto, N = 2^14) are still
 * verified, and `needsRehash` tells the login to replace them (and any Argon2
 * hash below today's cost) with a new one after a successful check.
 *
 * `PasswordHasher` bounds the hashing work (each check takes ~19 MB and a
 * thread for tens of milliseconds): at most
 * PASSWORD_HASH_CONCURRENCY checks run at once and at most PASSWORD_HASH_QUEUE
 * wait, of which one client (Address.ts) may hold a quarter; any more is
 * refused at once (503, or 429 for that client) instead of queueing behind a
 * flood, so a flood of guesses cannot push a real login's check minutes back.
 */
import type { Algorithm } from "@node-rs/argon2"
import * as Argon2 from "@node-rs/argon2"
import { Effect } from "effect"
import { scrypt, timingSafeEqual } from "node:crypto"
import { PasswordHashConfig } from "../Config.js"
import { PasswordChecksBusy, TooManyAttempts } from "./Errors.js"

/** `Algorithm.Argon2id`: the package declares a const enum, which isolated modules cannot read. */
const ARGON2ID = 2 as Algorithm
const ARGON2 = { algorithm: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 } as const
/** Refuse stored parameters that would make a single check absurdly expensive. */
const MAX_SCRYPT_N = 1 << 20
const MAX_ARGON2_MEMORY_KIB = 1 << 20
const MAX_ARGON2_TIME = 16

const deriveScrypt = (password: string, salt: Buffer, N: number, r: number, p: number, keyLength: number) =>
  Effect.async<Buffer, Error>((resume) => {
    scrypt(
      password,
      salt,
      keyLength,
      { N, r, p, maxmem: 256 * N * r + 1024 * 1024 },
      (err, key) => resume(err ? Effect.fail(err) : Effect.succeed(key))
    )
  })

export const hashPassword = (password: string): Effect.Effect<string> =>
  Effect.promise(() => Argon2.hash(password, ARGON2))

const verifyScrypt = (password: string, stored: string): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const parts = stored.split("$")
    if (parts.length !== 6) return Effect.succeed(false)
    const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
    const salt = Buffer.from(parts[4]!, "base64url")
    const expected = Buffer.from(parts[5]!, "base64url")
    const sane = [N, r, p].every(Number.isSafeInteger) && N > 1 && N <= MAX_SCRYPT_N && (N & (N - 1)) === 0 &&
      r > 0 && r <= 32 && p > 0 && p <= 16 && salt.length > 0 && expected.length >= 16 && expected.length <= 128
    if (!sane) return Effect.succeed(false)
    return deriveScrypt(password, salt, N, r, p, expected.length).pipe(
      Effect.map((key) => timingSafeEqual(key, expected)),
      Effect.orElseSucceed(() => false)
    )
  })

/** The parameters of a readable Argon2id hash, or undefined. */
const argon2Options = (stored: string) => {
  try {
    const o = Argon2.parseOptions(stored)
    return o.algorithm === ARGON2ID ? o : undefined
  } catch {
    return undefined
  }
}

const verifyArgon2 = (password: string, stored: string): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const o = argon2Options(stored)
    if (o === undefined || o.memoryCost > MAX_ARGON2_MEMORY_KIB || o.timeCost > MAX_ARGON2_TIME || o.parallelism > 16) {
      return Effect.succeed(false)
    }
    return Effect.tryPromise(() => Argon2.verify(stored, password)).pipe(Effect.orElseSucceed(() => false))
  })

/** False for a wrong password or a stored hash this module cannot read. */
export const verifyPassword = (password: string, stored: string): Effect.Effect<boolean> =>
  stored.startsWith("$argon2id$")
    ? verifyArgon2(password, stored)
    : stored.startsWith("scrypt$")
    ? verifyScrypt(password, stored)
    : Effect.succeed(false)

/** Whether a stored hash (already verified) is weaker than today's: it is replaced at the next login. */
export const needsRehash = (stored: string): boolean => {
  const o = argon2Options(stored)
  return o === undefined || o.memoryCost < ARGON2.memoryCost || o.timeCost < ARGON2.timeCost ||
    o.outputLen < ARGON2.outputLen
}

/** The seconds a refused check is told to wait: a check lasts tens of milliseconds, so places free up fast. */
const RETRY_AFTER_SECONDS = 1

/**
 * Runs password checks within `concurrency` at once and `queue` waiting;
 * one client may hold at most a quarter of those places (at least one).
 */
export const makeCheckGate = (cfg: PasswordHashConfig) =>
  Effect.gen(function*() {
    const semaphore = yield* Effect.makeSemaphore(cfg.concurrency)
    const capacity = cfg.concurrency + cfg.queue
    const perClient = Math.max(1, Math.floor(capacity / 4))
    let held = 0
    const byClient = new Map<string, number>()

    const enter = (client: string) =>
      Effect.suspend((): Effect.Effect<void, TooManyAttempts | PasswordChecksBusy> => {
        const mine = byClient.get(client) ?? 0
        if (mine >= perClient) {
          return Effect.fail(
            new TooManyAttempts({
              message: `Too many logins at once from this address; try again in ${RETRY_AFTER_SECONDS} s`,
              retryAfterSeconds: RETRY_AFTER_SECONDS
            })
          )
        }
        if (held >= capacity) {
          return Effect.fail(
            new PasswordChecksBusy({
              message: `Too many logins are being checked; try again in ${RETRY_AFTER_SECONDS} s`,
              retryAfterSeconds: RETRY_AFTER_SECONDS
            })
          )
        }
        held++
        byClient.set(client, mine + 1)
        return Effect.void
      })
    const leave = (client: string) =>
      Effect.sync(() => {
        held--
        const left = (byClient.get(client) ?? 1) - 1
        if (left === 0) byClient.delete(client)
        else byClient.set(client, left)
      })

    return {
      /** `check` once a place is free, or refused at once when `client` or everyone already holds too many. */
      run: <A, E, R>(client: string, check: Effect.Effect<A, E, R>) =>
        Effect.acquireUseRelease(enter(client), () => semaphore.withPermits(1)(check), () => leave(client)),
      /** `work` once a thread is free, however long that takes (callers that are not anonymous). */
      queue: <A, E, R>(work: Effect.Effect<A, E, R>) => semaphore.withPermits(1)(work),
      /** Places taken (running or waiting), for tests. */
      held: () => held
    } as const
  })

export class PasswordHasher extends Effect.Service<PasswordHasher>()("OpsDesk/Auth/PasswordHasher", {
  effect: Effect.gen(function*() {
    const gate = yield* Effect.flatMap(PasswordHashConfig, makeCheckGate)
    return {
      /** Whether `password` matches `stored`; refused at once when there is no room to check it (see above). */
      verify: (password: string, stored: string, client: string) => gate.run(client, verifyPassword(password, stored)),
      /** A new hash (for a password being set), waiting for a free thread, never refused. */
      hash: (password: string) => gate.queue(hashPassword(password))
    } as const
  })
}) {}
