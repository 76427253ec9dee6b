/**
 * Pure pieces, no server: Schema round trips over generated values (every
 * domain event and every request/response Schema), cursors, passwords, the
 * status machine, and the JWT secret rules (refused values, rotation).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Argon2 from "@node-rs/argon2"
import { ConfigProvider, Effect, Either, Layer, Option, Redacted, Schema } from "effect"
import { jwtVerify } from "jose"
import { randomBytes, scryptSync } from "node:crypto"
import { LoginRequest, LoginResponse } from "../../src/Auth/Api.js"
import { hashPassword, needsRehash, verifyPassword } from "../../src/Auth/Password.js"
import { jwtSecrets } from "../../src/Auth/Secret.js"
import { Tokens } from "../../src/Auth/Tokens.js"
import { JwtConfig, MIN_JWT_SECRET_BYTES, PUBLIC_JWT_SECRETS } from "../../src/Config.js"
import {
  decodeEventJson,
  DomainEvent,
  MessageSent,
  TicketCreated,
  TicketStatus,
  TicketStatusChanged,
  TicketUpdated
} from "../../src/Domain/Events.js"
import { decodeCursor, encodeCursor } from "../../src/Kit/Pagination.js"
import { ListMessagesParams, Message, MessagePage, SendMessageRequest } from "../../src/Messages/Domain.js"
import {
  canTransition,
  ChangeStatusRequest,
  CreateTicketRequest,
  ListTicketsParams,
  Ticket,
  TicketPage,
  TRANSITIONS,
  UpdateTicketRequest
} from "../../src/Tickets/Domain.js"
import { CreateUserRequest, User } from "../../src/Users/Domain.js"

const withEnv = (values: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(values))))

/** encode → JSON text → parse → decode gives back the value. */
const roundTrips = <A, I>(schema: Schema.Schema<A, I>) => (value: A) => {
  const wire = JSON.parse(JSON.stringify(Schema.encodeSync(schema)(value)))
  expect(Schema.decodeUnknownSync(schema)(wire)).toEqual(value)
}

const numRuns = { fastCheck: { numRuns: 50 } }

describe("Schema round trips (property)", () => {
  it.prop("every domain event survives the wire and decodeEventJson", { event: DomainEvent }, ({ event }) => {
    roundTrips(DomainEvent)(event)
    expect(decodeEventJson(JSON.stringify(Schema.encodeSync(DomainEvent)(event)))).toEqual(Either.right(event))
  }, numRuns)

  it.prop("each event Schema on its own", {
    created: TicketCreated,
    updated: TicketUpdated,
    status: TicketStatusChanged,
    sent: MessageSent
  }, ({ created, sent, status, updated }) => {
    roundTrips(TicketCreated)(created)
    roundTrips(TicketUpdated)(updated)
    roundTrips(TicketStatusChanged)(status)
    roundTrips(MessageSent)(sent)
  }, numRuns)

  it.prop("request Schemas", {
    login: LoginRequest,
    user: CreateUserRequest,
    create: CreateTicketRequest,
    update: UpdateTicketRequest,
    status: ChangeStatusRequest,
    list: ListTicketsParams,
    message: SendMessageRequest,
    messages: ListMessagesParams
  }, (values) => {
    roundTrips(LoginRequest)(values.login)
    roundTrips(CreateUserRequest)(values.user)
    roundTrips(CreateTicketRequest)(values.create)
    roundTrips(UpdateTicketRequest)(values.update)
    roundTrips(ChangeStatusRequest)(values.status)
    roundTrips(ListTicketsParams)(values.list)
    roundTrips(SendMessageRequest)(values.message)
    roundTrips(ListMessagesParams)(values.messages)
  }, numRuns)

  it.prop("response Schemas", {
    login: LoginResponse,
    user: User,
    ticket: Ticket,
    page: TicketPage,
    message: Message,
    messages: MessagePage
  }, (values) => {
    roundTrips(LoginResponse)(values.login)
    roundTrips(User)(values.user)
    roundTrips(Ticket)(values.ticket)
    roundTrips(TicketPage)(values.page)
    roundTrips(Message)(values.message)
    roundTrips(MessagePage)(values.messages)
  }, numRuns)

  it("`normal` decodes to medium; an empty patch is rejected", () => {
    expect(Schema.decodeUnknownSync(CreateTicketRequest)({ title: "t", description: "", priority: "normal" }).priority)
      .toBe("medium")
    expect(Either.isLeft(Schema.decodeUnknownEither(UpdateTicketRequest)({}))).toBe(true)
  })
})

describe("cursors", () => {
  it.prop("encode then decode gives the position back", {
    ms: Schema.Int.pipe(Schema.between(0, 253402300799999)),
    micro: Schema.Int.pipe(Schema.between(0, 999)),
    id: Schema.UUID
  }, ({ id, micro, ms }) => {
    const ts = new Date(ms).toISOString().slice(0, 23) + String(micro).padStart(3, "0") + "Z"
    expect(decodeCursor(encodeCursor({ ts, id }))).toEqual(Option.some({ ts, id: id.toLowerCase() }))
  }, numRuns)

  it.prop("decoding never throws on arbitrary input", { s: Schema.String }, ({ s }) => {
    expect(Option.isOption(decodeCursor(s))).toBe(true)
  }, { fastCheck: { numRuns: 200 } })

  it("rejects impossible instants", () => {
    const id = crypto.randomUUID()
    for (
      const ts of [
        "2024-02-31T00:00:00.000000Z",
        "2024-13-01T00:00:00.000000Z",
        "0000-01-01T00:00:00.000000Z",
        "2024-01-01T25:00:00.000000Z"
      ]
    ) {
      expect(decodeCursor(Buffer.from(`${ts}|${id}`).toString("base64url")), ts).toEqual(Option.none())
    }
  })
})

describe("status machine", () => {
  it("allows exactly open→in_progress→resolved→closed and resolved|closed→open", () => {
    const allowed = TicketStatus.literals.flatMap((from) =>
      TicketStatus.literals.filter((to) => canTransition(from, to)).map((to) => `${from}>${to}`)
    )
    expect(allowed.sort()).toEqual([
      "closed>open",
      "in_progress>resolved",
      "open>in_progress",
      "resolved>closed",
      "resolved>open"
    ])
    for (const s of TicketStatus.literals) expect(TRANSITIONS[s]).not.toContain(s)
  })
})

describe("passwords", () => {
  /** A hash as versions before Argon2id wrote them (scrypt, N = 2^14). */
  const legacyScrypt = (password: string) => {
    const salt = randomBytes(16)
    const key = scryptSync(password, salt, 32, { N: 16384, r: 8, p: 1 })
    return `scrypt$16384$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`
  }

  it.effect("Argon2id at OWASP's cost; the hash embeds parameters and salt; verify accepts only the password", () =>
    Effect.gen(function*() {
      const hash = yield* hashPassword("hunter2-hunter2")
      expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[\w+/]{22}\$[\w+/]{43}$/)
      expect(yield* hashPassword("hunter2-hunter2")).not.toBe(hash)
      expect(yield* verifyPassword("hunter2-hunter2", hash)).toBe(true)
      expect(yield* verifyPassword("hunter2-hunter3", hash)).toBe(false)
      expect(needsRehash(hash)).toBe(false)
      for (
        const broken of [
          "",
          "plain",
          "scrypt$1$1$1$a$b",
          "scrypt$99999999$8$1$abc$def",
          hash.slice(0, -4),
          hash.replace("m=19456", "m=99999999"),
          hash.replace("argon2id", "argon2i")
        ]
      ) {
        expect(yield* verifyPassword("hunter2-hunter2", broken), broken).toBe(false)
      }
    }))

  it.effect("hashes of earlier versions still verify and are marked for an upgrade", () =>
    Effect.gen(function*() {
      const old = legacyScrypt("hunter2-hunter2")
      expect(yield* verifyPassword("hunter2-hunter2", old)).toBe(true)
      expect(yield* verifyPassword("hunter2-hunter3", old)).toBe(false)
      expect(yield* verifyPassword("hunter2-hunter2", old.replace("$8$", "$x$"))).toBe(false)
      expect(needsRehash(old)).toBe(true)
      const weak = yield* Effect.promise(() =>
        Argon2.hash("hunter2-hunter2", { algorithm: 2 as Argon2.Algorithm, memoryCost: 4096, timeCost: 1 })
      )
      expect(yield* verifyPassword("hunter2-hunter2", weak)).toBe(true)
      expect(needsRehash(weak)).toBe(true)
    }))
})

describe("JWT secret", () => {
  const random = () => randomBytes(32).toString("hex")
  const configWith = (env: Record<string, string>) => Effect.either(JwtConfig.pipe(withEnv(env)))

  it.effect("a short or published secret is refused in every environment, with one line naming the variable", () =>
    Effect.gen(function*() {
      const refused = [
        "mine",
        "a-real-secret-from-the-vault",
        "x".repeat(MIN_JWT_SECRET_BYTES - 1),
        ...PUBLIC_JWT_SECRETS,
        ...PUBLIC_JWT_SECRETS.map((s) => ` ${s}\n`)
      ]
      for (const nodeEnv of ["development", "production", "test"]) {
        for (const name of ["JWT_SECRET", "JWT_SECRET_PREVIOUS"]) {
          for (const value of refused) {
            const result = yield* configWith({ NODE_ENV: nodeEnv, [name]: value })
            expect(Either.isLeft(result), `${nodeEnv} ${name}=${value}`).toBe(true)
            const message = String(Either.isLeft(result) ? result.left : "")
            expect(message).toContain(name)
            expect(message).toContain("openssl rand -hex 32")
            expect(message).not.toContain("\n")
            expect(message).not.toContain(value.trim())
          }
        }
      }
    }))

  it.effect("unset or blank means generated (None); 32 random bytes or more are accepted", () =>
    Effect.gen(function*() {
      for (const env of [{}, { JWT_SECRET: "" }, { JWT_SECRET: "   " }] as Array<Record<string, string>>) {
        const result = yield* configWith(env)
        expect(Either.isRight(result) && Option.isNone(result.right.secret), JSON.stringify(env)).toBe(true)
      }
      const current = random()
      const previous = "é".repeat(MIN_JWT_SECRET_BYTES / 2) // 32 bytes in UTF-8, 16 characters
      const result = yield* configWith({ NODE_ENV: "production", JWT_SECRET: current, JWT_SECRET_PREVIOUS: previous })
      expect(Either.isRight(result)).toBe(true)
      if (Either.isRight(result)) {
        expect(Option.map(result.right.secret, Redacted.value)).toEqual(Option.some(current))
        expect(Option.map(result.right.previous, Redacted.value)).toEqual(Option.some(previous))
      }
      const same = yield* configWith({ JWT_SECRET: current, JWT_SECRET_PREVIOUS: current })
      expect(String(Either.isLeft(same) ? same.left : "")).toContain("JWT_SECRET_PREVIOUS equals JWT_SECRET")
    }))

  it.effect("tokens are signed with the current secret; the previous one verifies, an unrelated one does not", () =>
    Effect.gen(function*() {
      const [current, previous, unrelated] = [random(), random(), random()]
      const subject = { id: crypto.randomUUID(), username: "someone", role: "agent" as const, tokenVersion: 0 }
      const issueWith = (secret: string) =>
        Effect.flatMap(Tokens, (t) => t.issue(subject)).pipe(
          Effect.provide(Tokens.DefaultWithoutDependencies.pipe(Layer.provide(jwtSecrets(secret))))
        )
      const rotated = Tokens.DefaultWithoutDependencies.pipe(Layer.provide(jwtSecrets(current, previous)))
      const verify = (token: string) =>
        Effect.flatMap(Tokens, (t) => t.verify(token)).pipe(Effect.provide(rotated), Effect.either)
      const issued = yield* Effect.flatMap(Tokens, (t) => t.issue(subject)).pipe(Effect.provide(rotated))
      // Signed with the current secret, not the previous one.
      expect(yield* Effect.promise(() => jwtVerify(issued.accessToken, new TextEncoder().encode(current)))).toBeTruthy()
      expect(
        yield* Effect.promise(() =>
          jwtVerify(issued.accessToken, new TextEncoder().encode(previous)).then(() => "accepted", () => "refused")
        )
      ).toBe("refused")
      expect(Either.isRight(yield* verify(issued.accessToken))).toBe(true)
      expect(Either.isRight(yield* verify((yield* issueWith(previous)).accessToken))).toBe(true)
      expect(Either.isLeft(yield* verify((yield* issueWith(unrelated)).accessToken))).toBe(true)
    }).pipe(withEnv({})))

  it.effect("tokens issued under one secret verify only under it; lifetime comes from JWT_EXPIRES_IN_SECONDS", () =>
    Effect.gen(function*() {
      const actor = { id: crypto.randomUUID(), username: "someone", role: "agent" as const, tokenVersion: 0 }
      const [one, two] = [randomBytes(32).toString("hex"), randomBytes(32).toString("hex")]
      const tokensWith = (secret: string) => Tokens.DefaultWithoutDependencies.pipe(Layer.provide(jwtSecrets(secret)))
      const issued = yield* Effect.flatMap(Tokens, (t) => t.issue(actor)).pipe(
        Effect.provide(tokensWith(one)),
        withEnv({ JWT_EXPIRES_IN_SECONDS: "120" })
      )
      expect(issued.expiresIn).toBe(120)
      const exp = JSON.parse(Buffer.from(issued.accessToken.split(".")[1]!, "base64url").toString()).exp
      expect(exp - Math.floor(Date.now() / 1000)).toBeGreaterThan(100)
      expect(exp - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(120)
      const verifyWith = (secret: string) =>
        Effect.flatMap(Tokens, (t) => t.verify(issued.accessToken)).pipe(
          Effect.provide(tokensWith(secret)),
          withEnv({}),
          Effect.either
        )
      expect(yield* verifyWith(one)).toEqual(Either.right({ userId: actor.id, version: 0, exp }))
      expect(Either.isLeft(yield* verifyWith(two))).toBe(true)
    }))
})
