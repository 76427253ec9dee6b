/**
 * Reading DLQ messages (src/Dlq/Entry.ts) and the CLI's text helpers
 * (src/Cli/Format.ts), without a broker.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Message, MessageProperties } from "amqplib"
import { Duration, Either } from "effect"
import { formatAge, formatDuration, parseDuration, renderTable } from "../../src/Cli/Format.js"
import { failedAtMs, matches, messageKey, replayOptions, replayTarget, toEntry } from "../../src/Dlq/Entry.js"

const message = (body: string, properties: Partial<MessageProperties> = {}): Message => ({
  content: Buffer.from(body),
  fields: { deliveryTag: 1, redelivered: false, exchange: "", routingKey: "tickets.dlq" },
  properties: {
    contentType: undefined,
    contentEncoding: undefined,
    headers: {},
    deliveryMode: 2,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: undefined,
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
    ...properties
  }
})

const eventBody = JSON.stringify({
  event: "message.sent",
  eventId: "e-1",
  occurredAt: "2026-01-01T00:00:00.000Z",
  payload: {}
})

const workerCopy = (headers: Record<string, unknown> = {}) =>
  message(eventBody, {
    messageId: "e-1",
    type: "message.sent",
    contentType: "application/json",
    headers: {
      "opsdesk-retry-count": 2,
      "opsdesk-last-error": "boom",
      "opsdesk-error": "boom",
      "opsdesk-error-kind": "failed",
      "opsdesk-attempts": 3,
      "opsdesk-original-routing-key": "message.sent",
      "opsdesk-original-queue": "message.sent.queue",
      "opsdesk-failed-at": "2026-01-01T00:00:00.000Z",
      traceparent: "t",
      ...headers
    }
  })

describe("DLQ entries", () => {
  it("reads the worker's DLQ headers", () => {
    const entry = toEntry(workerCopy(), Date.parse("2026-01-01T01:00:00.000Z"))
    expect(entry).toMatchObject({
      event: "message.sent",
      eventId: "e-1",
      originalRoutingKey: "message.sent",
      originalQueue: "message.sent.queue",
      attempts: 3,
      error: "boom",
      kind: "failed",
      failedAt: "2026-01-01T00:00:00.000Z",
      ageSeconds: 3600,
      replayable: true
    })
    expect(entry.id).toMatch(/^[0-9a-f]{16}$/)
  })

  it("ids are stable for one copy and differ between two copies of one event", () => {
    expect(messageKey(workerCopy())).toBe(messageKey(workerCopy()))
    expect(messageKey(workerCopy({ "opsdesk-failed-at": "2026-01-02T00:00:00.000Z" }))).not.toBe(
      messageKey(workerCopy())
    )
  })

  it("reads a copy RabbitMQ dead-lettered itself (x-death)", () => {
    const msg = message(eventBody, {
      messageId: "e-1",
      headers: {
        "x-death": [{
          count: 1,
          reason: "rejected",
          queue: "message.sent.queue",
          time: { "!": "timestamp", value: 1_767_225_600 },
          exchange: "opsdesk.events",
          "routing-keys": ["message.sent"]
        }],
        "x-first-death-queue": "message.sent.queue",
        "x-first-death-reason": "rejected"
      }
    })
    expect(toEntry(msg, 1_767_225_600_000 + 5000)).toMatchObject({
      kind: "failed",
      originalQueue: "message.sent.queue",
      originalRoutingKey: "message.sent",
      error: "dead-lettered by RabbitMQ (rejected)",
      failedAt: "2026-01-01T00:00:00.000Z",
      ageSeconds: 5
    })
    expect(replayTarget(msg)).toEqual(Either.right("message.sent"))
  })

  it("falls back to the AMQP timestamp (seconds or milliseconds) for the failure time", () => {
    expect(failedAtMs(message("x", { timestamp: 1_767_225_600 }))).toBe(1_767_225_600_000)
    expect(failedAtMs(message("x", { timestamp: 1_767_225_600_123 }))).toBe(1_767_225_600_123)
    expect(failedAtMs(message("x"))).toBeNull()
  })

  it("replays to the original routing key, else the body's event; never poison or unknown events", () => {
    expect(replayTarget(workerCopy())).toEqual(Either.right("message.sent"))
    expect(replayTarget(message(eventBody))).toEqual(Either.right("message.sent"))
    expect(Either.isLeft(replayTarget(workerCopy({ "opsdesk-error-kind": "poison" })))).toBe(true)
    expect(Either.isLeft(replayTarget(workerCopy({ "opsdesk-original-routing-key": "ticket.deleted" })))).toBe(true)
    expect(Either.isLeft(replayTarget(message("{not json")))).toBe(true)
  })

  it("lists invalid and conflicting events with their kind, and never replays them", () => {
    for (const kind of ["invalid", "conflict"] as const) {
      const msg = workerCopy({
        "opsdesk-error-kind": kind,
        "opsdesk-fingerprint": "a".repeat(64),
        "opsdesk-claimed-fingerprint": "b".repeat(64)
      })
      expect(toEntry(msg, Date.now())).toMatchObject({ kind, replayable: false })
      expect(replayTarget(msg)).toEqual(
        Either.left(expect.stringContaining(kind === "invalid" ? "invalid" : "conflicting"))
      )
    }
  })

  it("a replayed copy keeps the message's identity and drops the failure", () => {
    const options = replayOptions(
      workerCopy({ "x-retry-count": 2, "x-death": [], "opsdesk-replayed-at": "old" }),
      new Date("2026-02-01T00:00:00.000Z")
    )
    expect(options).toMatchObject({
      persistent: true,
      mandatory: true,
      messageId: "e-1",
      type: "message.sent",
      contentType: "application/json"
    })
    expect(options.headers).toEqual({ traceparent: "t", "opsdesk-replayed-at": "2026-02-01T00:00:00.000Z" })
  })

  it("selectors match by event id (or messageId), event type (or routing key), id, or all", () => {
    const entry = toEntry(workerCopy(), 0)
    expect(matches({ all: true }, entry)).toBe(true)
    expect(matches({ eventId: "e-1" }, entry)).toBe(true)
    expect(matches({ eventId: "e-2" }, entry)).toBe(false)
    expect(matches({ event: "message.sent" }, entry)).toBe(true)
    expect(matches({ event: "ticket.created" }, entry)).toBe(false)
    expect(matches({ id: entry.id }, entry)).toBe(true)
  })
})

describe("CLI formatting", () => {
  it("parses durations as typed on the command line", () => {
    const ms = (s: string) => Either.map(parseDuration(s), Duration.toMillis)
    expect(ms("30m")).toEqual(Either.right(1_800_000))
    expect(ms("1h")).toEqual(Either.right(3_600_000))
    expect(ms("7d")).toEqual(Either.right(604_800_000))
    expect(ms("1h30m")).toEqual(Either.right(5_400_000))
    expect(ms("500ms")).toEqual(Either.right(500))
    for (const bad of ["", "1", "h", "1 hour", "-1h", "0m", "1y"]) expect(Either.isLeft(parseDuration(bad))).toBe(true)
    expect(formatDuration(Duration.minutes(90))).toBe("1h30m")
    expect(formatDuration(Duration.days(7))).toBe("7d")
  })

  it("formats ages and tables", () => {
    expect([formatAge(null), formatAge(5), formatAge(125), formatAge(7200), formatAge(200_000)]).toEqual([
      "?",
      "5s",
      "2m",
      "2h",
      "2d"
    ])
    expect(
      renderTable([{ header: "A" }, { header: "N", align: "right" }, { header: "TEXT", maxWidth: 5 }], [[
        "x",
        "7",
        "abcdefgh"
      ], ["yy", "10", "ok"]])
    )
      .toBe(["A    N  TEXT", "x    7  abcd…", "yy  10  ok"].join("\n"))
  })
})
