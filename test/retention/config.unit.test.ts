/**
 * The dedupe invariant in the configuration: RETENTION_PROCESSED_EVENTS must
 * exceed DLQ_REPLAY_WINDOW plus the retry delays, or every process refuses to
 * start; and the age check a replay applies.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either } from "effect"
import { retryDelays } from "../../src/Broker/Topology.js"
import { RetentionConfig, retryDelaySpan } from "../../src/Config.js"
import { tooOldToReplay } from "../../src/Dlq/Dlq.js"
import type { DlqEntry } from "../../src/Dlq/Entry.js"

const read = (values: Readonly<Record<string, string | undefined>>) =>
  Effect.runSync(
    Effect.either(
      RetentionConfig.pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(
            new Map(Object.entries(values).flatMap(([k, v]) => (v === undefined ? [] : [[k, v] as const])))
          )
        )
      )
    )
  )

describe("retention configuration", () => {
  it("the retry span is the sum of the topology's retry delays", () => {
    for (
      const [initial, max, retries] of [[1000, 30_000, 3], [1000, 30_000, 0], [500, 2000, 6], [250, 250, 4], [
        1000,
        30_000,
        12
      ]]
    ) {
      const cfg = {
        retryInitialDelay: Duration.millis(initial!),
        retryMaxDelay: Duration.millis(max!),
        maxRetries: retries!
      }
      expect(Duration.toMillis(retryDelaySpan(cfg))).toBe(retryDelays(cfg).reduce((a, b) => a + b, 0))
    }
  })

  it("the defaults are safe, and on", () => {
    const cfg = read({})
    expect(Either.isRight(cfg)).toBe(true)
    if (Either.isRight(cfg)) {
      expect(cfg.right.enabled).toBe(true)
      expect(Duration.toMillis(cfg.right.retryDelaySpan)).toBe(7000)
      expect(
        Duration.greaterThan(
          cfg.right.processedEvents,
          Duration.sum(cfg.right.dlqReplayWindow, cfg.right.retryDelaySpan)
        )
      )
        .toBe(true)
    }
  })

  it("refuses a dedupe window that does not exceed the replay window plus the retry delays, naming both", () => {
    const refused = [
      { RETENTION_PROCESSED_EVENTS: "7 days", DLQ_REPLAY_WINDOW: "7 days" },
      { RETENTION_PROCESSED_EVENTS: "1 hours", DLQ_REPLAY_WINDOW: "2 hours" },
      // Equal to the replay window plus the retry delays (1 + 2 + 4 s by default) is not enough either.
      { RETENTION_PROCESSED_EVENTS: "3607 seconds", DLQ_REPLAY_WINDOW: "1 hours" },
      // Long retries eat the margin.
      {
        RETENTION_PROCESSED_EVENTS: "61 minutes",
        DLQ_REPLAY_WINDOW: "1 hours",
        MAX_RETRIES: "5",
        RETRY_INITIAL_DELAY_MS: "60000",
        RETRY_MAX_DELAY_MS: "60000"
      }
    ]
    for (const values of refused) {
      const cfg = read(values)
      expect(Either.isLeft(cfg)).toBe(true)
      if (Either.isLeft(cfg)) {
        expect(String(cfg.left)).toMatch(
          /RETENTION_PROCESSED_EVENTS .* must exceed DLQ_REPLAY_WINDOW .* plus the retry delays/
        )
      }
    }
    expect(Either.isRight(read({ RETENTION_PROCESSED_EVENTS: "3608 seconds", DLQ_REPLAY_WINDOW: "1 hours" }))).toBe(
      true
    )
  })

  it("refuses windows that are not durations above zero", () => {
    for (
      const values of [{ RETENTION_OUTBOX: "0 seconds" }, { RETENTION_AUDIT_LOG: "forever" }, {
        RETENTION_BATCH_SIZE: "0"
      }]
    ) {
      expect(Either.isLeft(read(values))).toBe(true)
    }
  })
})

describe("replay age", () => {
  const entry = (ageSeconds: number | null) => ({ ageSeconds }) as DlqEntry
  it("a message inside the replay window is replayable; older, or of unknown age, only with force", () => {
    const window = Duration.hours(1)
    expect(tooOldToReplay(entry(0), window)).toBeUndefined()
    expect(tooOldToReplay(entry(3600), window)).toBeUndefined()
    expect(tooOldToReplay(entry(3601), window)).toMatch(/longer than DLQ_REPLAY_WINDOW \(1h\).*run it\s+twice/)
    expect(tooOldToReplay(entry(null), window)).toMatch(/failure time is unknown/)
  })
})
