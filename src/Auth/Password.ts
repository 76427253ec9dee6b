/**
 * Password hashing with node:crypto scrypt. A stored hash embeds its
 * parameters and salt — `scrypt$N$r$p$salt$hash` (base64url) — so the cost can
 * be raised later without invalidating existing hashes. Comparison is
 * constant-time.
 */
import { Effect } from "effect"
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto"

const PARAMS = { N: 16384, r: 8, p: 1 } as const
const KEY_LENGTH = 32
const SALT_LENGTH = 16
/** Refuse stored parameters that would make a single check absurdly expensive. */
const MAX_N = 1 << 20

const derive = (password: string, salt: Buffer, N: number, r: number, p: number, keyLength: number) =>
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
  Effect.suspend(() => {
    const salt = randomBytes(SALT_LENGTH)
    return derive(password, salt, PARAMS.N, PARAMS.r, PARAMS.p, KEY_LENGTH).pipe(
      Effect.map((key) =>
        `scrypt$${PARAMS.N}$${PARAMS.r}$${PARAMS.p}$${salt.toString("base64url")}$${key.toString("base64url")}`
      ),
      Effect.orDie
    )
  })

/** False for a wrong password or a stored hash this module cannot read. */
export const verifyPassword = (password: string, stored: string): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const parts = stored.split("$")
    if (parts.length !== 6 || parts[0] !== "scrypt") return Effect.succeed(false)
    const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
    const salt = Buffer.from(parts[4]!, "base64url")
    const expected = Buffer.from(parts[5]!, "base64url")
    const sane = [N, r, p].every(Number.isSafeInteger) && N > 1 && N <= MAX_N && (N & (N - 1)) === 0 &&
      r > 0 && r <= 32 && p > 0 && p <= 16 && salt.length > 0 && expected.length >= 16 && expected.length <= 128
    if (!sane) return Effect.succeed(false)
    return derive(password, salt, N, r, p, expected.length).pipe(
      Effect.map((key) => timingSafeEqual(key, expected)),
      Effect.orElseSucceed(() => false)
    )
  })
