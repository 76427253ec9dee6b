/**
 * Pure parts of the consumer: the attempt counter read from the retry headers,
 * the broker-held retry delays, body decoding (canonical ids, fingerprints),
 * and the headers of copies too large to encode.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Duration, FastCheck as fc } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { decodeDelivery, type Delivery } from "../../src/Broker/Delivery.js"
import {
  attemptOf,
  deadLetterHeaders,
  describeDropped,
  RETRY_HEADER,
  SEED_RETRY_HEADER,
  tableSize,
  trimHeaders
} from "../../src/Broker/Headers.js"
import { retryDelays } from "../../src/Broker/Topology.js"
import { DomainEvent, EVENT_NAMES, eventFingerprint } from "../../src/Domain/Events.js"
import { encodeBody } from "../layers/MemoryBroker.js"

const maxRetriesArb = fc.integer({ min: 0, max: 10 })
const headerName = fc.constantFrom(RETRY_HEADER, SEED_RETRY_HEADER)

describe("attemptOf", () => {
  const cases: ReadonlyArray<
    { readonly name: string; readonly headers: Readonly<Record<string, unknown>>; readonly expected: number }
  > = [
    { name: "missing", headers: {}, expected: 0 },
    { name: "opsdesk header", headers: { [RETRY_HEADER]: 2 }, expected: 2 },
    { name: "seed header", headers: { [SEED_RETRY_HEADER]: 1 }, expected: 1 },
    {
      name: "opsdesk header wins over the seed's",
      headers: { [RETRY_HEADER]: 1, [SEED_RETRY_HEADER]: 3 },
      expected: 1
    },
    { name: "seed header when ours is null", headers: { [RETRY_HEADER]: null, [SEED_RETRY_HEADER]: 2 }, expected: 2 },
    { name: "zero", headers: { [RETRY_HEADER]: 0 }, expected: 0 },
    { name: "negative", headers: { [RETRY_HEADER]: -1 }, expected: 0 },
    { name: "very negative", headers: { [SEED_RETRY_HEADER]: -1e9 }, expected: 0 },
    { name: "fraction floors", headers: { [RETRY_HEADER]: 2.9 }, expected: 2 },
    { name: "numeric string", headers: { [RETRY_HEADER]: "2" }, expected: 2 },
    { name: "numeric string with spaces", headers: { [SEED_RETRY_HEADER]: " 1 " }, expected: 1 },
    { name: "negative string", headers: { [RETRY_HEADER]: "-2" }, expected: 0 },
    { name: "decimal string", headers: { [RETRY_HEADER]: "1.5" }, expected: 0 },
    { name: "non-numeric string", headers: { [RETRY_HEADER]: "three" }, expected: 0 },
    { name: "empty string", headers: { [RETRY_HEADER]: "" }, expected: 0 },
    { name: "NaN", headers: { [RETRY_HEADER]: Number.NaN }, expected: 0 },
    { name: "boolean", headers: { [RETRY_HEADER]: true }, expected: 0 },
    { name: "object", headers: { [RETRY_HEADER]: { n: 2 } }, expected: 0 },
    { name: "array", headers: { [SEED_RETRY_HEADER]: [2] }, expected: 0 },
    { name: "bigint", headers: { [RETRY_HEADER]: 2n }, expected: 2 },
    { name: "huge number clamps", headers: { [RETRY_HEADER]: 1e12 }, expected: 3 },
    { name: "huge numeric string clamps", headers: { [RETRY_HEADER]: "99999999999999999999" }, expected: 3 },
    { name: "huge bigint clamps", headers: { [RETRY_HEADER]: 10n ** 30n }, expected: 3 },
    { name: "Number.MAX_VALUE clamps", headers: { [SEED_RETRY_HEADER]: Number.MAX_VALUE }, expected: 3 }
  ]
  it.each(cases)("$name", ({ expected, headers }) => {
    expect(attemptOf(headers, 3)).toBe(expected)
  })

  it.prop("is always an integer in [0, maxRetries]", [
    fc.dictionary(fc.constantFrom(RETRY_HEADER, SEED_RETRY_HEADER, "other"), fc.anything()),
    maxRetriesArb
  ], ([headers, max]) => {
    const n = attemptOf(headers, max)
    expect(Number.isInteger(n)).toBe(true)
    expect(n).toBeGreaterThanOrEqual(0)
    expect(n).toBeLessThanOrEqual(max)
  }, { fastCheck: { numRuns: 200 } })

  it.prop("reads a non-negative integer (number or digits) and clamps it to maxRetries", [
    headerName,
    fc.nat(),
    fc.boolean(),
    maxRetriesArb
  ], ([name, n, asString, max]) => {
    expect(attemptOf({ [name]: asString ? String(n) : n }, max)).toBe(Math.min(n, max))
  }, { fastCheck: { numRuns: 200 } })

  it.prop("negative and non-numeric values count as 0", [
    headerName,
    fc.oneof(
      fc.integer({ max: -1 }),
      fc.double({ max: -Number.MIN_VALUE, noNaN: true }),
      fc.string().filter((s) => !/^\s*\d+\s*$/.test(s)),
      fc.constant(Number.NaN)
    ),
    maxRetriesArb
  ], ([name, value, max]) => {
    expect(attemptOf({ [name]: value }, max)).toBe(0)
  }, { fastCheck: { numRuns: 200 } })

  // Values that overflow to Infinity are clamped too: such a message has no retries left.
  it("Infinity clamps to maxRetries", () => {
    expect(attemptOf({ [RETRY_HEADER]: Number.POSITIVE_INFINITY }, 3)).toBe(3)
  })
  it("a 400-digit retry count clamps to maxRetries", () => {
    expect(attemptOf({ [SEED_RETRY_HEADER]: "9".repeat(400) }, 3)).toBe(3)
  })
  it("a bigint beyond Number.MAX_VALUE clamps to maxRetries", () => {
    expect(attemptOf({ [RETRY_HEADER]: 10n ** 400n }, 3)).toBe(3)
  })
})

describe("retryDelays", () => {
  it("is the seed's schedule by default: 1000, 2000, 4000", () => {
    expect(
      retryDelays({ retryInitialDelay: Duration.millis(1000), retryMaxDelay: Duration.millis(30_000), maxRetries: 3 })
    ).toEqual([1000, 2000, 4000])
  })

  it("caps at the maximum delay", () => {
    expect(
      retryDelays({ retryInitialDelay: Duration.millis(1000), retryMaxDelay: Duration.millis(30_000), maxRetries: 7 })
    ).toEqual([
      1000,
      2000,
      4000,
      8000,
      16_000,
      30_000,
      30_000
    ])
  })

  it("is empty with MAX_RETRIES = 0", () => {
    expect(
      retryDelays({ retryInitialDelay: Duration.millis(1000), retryMaxDelay: Duration.millis(30_000), maxRetries: 0 })
    ).toEqual([])
  })

  it.prop("delay n is min(initial * 2^n, max), one per retry", [
    fc.integer({ min: 1, max: 5000 }),
    fc.integer({ min: 0, max: 100_000 }),
    fc.integer({ min: 0, max: 12 })
  ], ([initial, extra, maxRetries]) => {
    const max = initial + extra
    const delays = retryDelays({
      retryInitialDelay: Duration.millis(initial),
      retryMaxDelay: Duration.millis(max),
      maxRetries
    })
    expect(delays).toEqual(Array.from({ length: maxRetries }, (_, n) => Math.min(initial * 2 ** n, max)))
  }, { fastCheck: { numRuns: 100 } })
})

const deliveryOf = (body: Uint8Array): Delivery => ({
  queue: "q",
  routingKey: "rk",
  body,
  messageId: undefined,
  headers: {},
  ack: undefined as never,
  requeue: undefined as never,
  retryLater: () => undefined as never,
  deadLetter: () => undefined as never
})

describe("decodeDelivery", () => {
  it.prop("round-trips every valid event", [Arbitrary.make(DomainEvent)], ([event]) => {
    const decoded = decodeDelivery(deliveryOf(encodeBody(JSON.stringify(event))))
    expect(decoded._tag).toBe("Right")
    if (decoded._tag === "Right") expect(decoded.right).toEqual(event)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("rejects random bytes with a short reason", [fc.uint8Array({ maxLength: 200 })], ([bytes]) => {
    const decoded = decodeDelivery(deliveryOf(bytes))
    expect(decoded._tag).toBe("Left")
    if (decoded._tag === "Left") {
      expect(decoded.left.length).toBeGreaterThan(0)
      expect(decoded.left.length).toBeLessThanOrEqual(1000)
    }
  }, { fastCheck: { numRuns: 100 } })

  it.prop("names an unknown event type", [
    Arbitrary.make(DomainEvent),
    fc.string().filter((s) => !(EVENT_NAMES as ReadonlyArray<string>).includes(s))
  ], ([event, name]) => {
    const decoded = decodeDelivery(deliveryOf(encodeBody(JSON.stringify({ ...event, event: name }))))
    expect(decoded).toMatchObject({ _tag: "Left", left: expect.stringMatching(/^Unknown event type/) })
  }, { fastCheck: { numRuns: 50 } })
})

describe("canonical events", () => {
  it.prop("an event with its ids in any letter case decodes to the same event, with the same fingerprint", [
    Arbitrary.make(DomainEvent),
    fc.array(fc.boolean(), { minLength: 1, maxLength: 7 })
  ], ([event, cases]) => {
    let i = 0
    const recased = JSON.stringify(
      event,
      (_, v) =>
        typeof v === "string" && /^[0-9a-f-]{36}$/.test(v)
          ? [...v].map((c) => (cases[i++ % cases.length] ? c.toUpperCase() : c)).join("")
          : v
    )
    const decoded = decodeDelivery(deliveryOf(encodeBody(recased)))
    expect(decoded._tag === "Right" && decoded.right).toEqual(event)
    expect(decoded._tag === "Right" && eventFingerprint(decoded.right)).toBe(eventFingerprint(event))
  }, { fastCheck: { numRuns: 100 } })

  it.prop("the fingerprint ignores the envelope's time and unknown fields, and changes with the payload", [
    Arbitrary.make(DomainEvent),
    fc.string({ minLength: 1 })
  ], ([event, extra]) => {
    const fp = eventFingerprint(event)
    expect(fp).toMatch(/^[0-9a-f]{64}$/)
    const copy = decodeDelivery(
      deliveryOf(encodeBody(JSON.stringify({ ...event, occurredAt: "2000-01-01T00:00:00Z", extra })))
    )
    expect(copy._tag === "Right" && eventFingerprint(copy.right)).toBe(fp)
    const other = { ...event, payload: { ...event.payload, id: crypto.randomUUID() } } as DomainEvent
    expect(eventFingerprint(other)).not.toBe(fp)
  }, { fastCheck: { numRuns: 100 } })
})

/** amqplib's own encoder (internal, not exported, so loaded by its file): the truth `tableSize` bounds. */
const require = createRequire(import.meta.url)
const codec = require(Path.join(Path.dirname(require.resolve("amqplib")), "lib", "codec.js")) as {
  readonly encodeTable: (buffer: Buffer, value: unknown, offset: number) => number
}
const amqplibSize = (headers: Record<string, unknown>): number | "refused" => {
  try {
    return codec.encodeTable(Buffer.alloc(1 << 20), headers, 0)
  } catch {
    return "refused"
  }
}

/** Header values as amqplib decodes them off the wire, plus what a publisher may put in a table. */
const wireValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.string({ maxLength: 40 }),
    fc.fullUnicodeString({ maxLength: 10 }),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b)),
    fc.constant({ "!": "timestamp", value: 1_700_000_000 }),
    fc.constant({ "!": "decimal", value: { places: 2, digits: 1234 } }),
    fc.constant({ "!": "nonsense", value: 1 }),
    fc.constant({ "!": "long", value: 1.5 }),
    fc.constantFrom(-1e19, Number.NaN, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, 2 ** 63, 2 ** 50 + 0.5),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== "!"), tie("value"), { maxKeys: 3 })
  )
})).value
const headersArb = fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), wireValue, { maxKeys: 8 })

describe("copies too large to encode", () => {
  it.prop(
    "when tableSize has a size, amqplib encodes the table in at most that many bytes",
    [headersArb],
    ([headers]) => {
      const size = tableSize(headers)
      const actual = amqplibSize(headers)
      if (size !== undefined) {
        expect(actual).not.toBe("refused")
        expect(size).toBeGreaterThanOrEqual(actual as number)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("tableSize refuses what amqplib refuses to encode", () => {
    for (
      const value of [
        -1e19,
        Number.NaN,
        Number.NEGATIVE_INFINITY,
        2 ** 50 + 0.5,
        { "!": "nonsense", value: 1 },
        { "!": "long", value: 1.5 },
        { "!": "timestamp", value: -1 },
        [1, { "!": "byte", value: 1000 }],
        { nested: { "!": "decimal", value: { places: 300, digits: 1 } } }
      ]
    ) {
      expect(amqplibSize({ h: value }), JSON.stringify(value)).toBe("refused")
      expect(tableSize({ h: value }), JSON.stringify(value)).toBeUndefined()
    }
    expect(amqplibSize({ h: 2 ** 63 })).not.toBe("refused")
    expect(tableSize({ h: 2 ** 63 })).toBeDefined()
  })

  it.prop("trimmed headers always encode, keep OpsDesk's small ones, and name every header they drop", [
    headersArb,
    fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.integer({ min: 0, max: 70_000 })), { maxLength: 6 })
  ], ([headers, big]) => {
    const all: Record<string, unknown> = { ...headers, "opsdesk-replayed-at": "2026-01-01T00:00:00Z" }
    for (const [k, n] of big) all[`x-${k}`] = "a".repeat(n)
    const { dropped, kept } = trimHeaders(all)
    expect(new Set([...Object.keys(kept), ...dropped])).toEqual(
      new Set(Object.keys(all).filter((k) => all[k] !== undefined))
    )
    expect(kept["opsdesk-replayed-at"]).toBe("2026-01-01T00:00:00Z")
    // With OpsDesk's DLQ headers added, the copy still fits amqplib's 64 KiB buffer.
    const copy = deadLetterHeaders(kept, {
      kind: "poison",
      reason: "r".repeat(5000),
      attempts: 1,
      routingKey: "k".repeat(5000),
      queue: "message.sent.queue",
      failedAt: new Date(),
      fingerprints: { received: "a".repeat(64), claimed: "b".repeat(64) }
    })
    const actual = amqplibSize(copy)
    expect(actual).not.toBe("refused")
    expect(actual).toBeLessThanOrEqual(65_536)
    expect(describeDropped(dropped).length).toBeLessThanOrEqual(10 * 66 + 30)
  }, { fastCheck: { numRuns: 200 } })
})
