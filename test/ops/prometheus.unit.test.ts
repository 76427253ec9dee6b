/** The minimal Prometheus text parser and the worker panel built from it. */
import { describe, expect, it } from "@effect/vitest"
import { workerStats } from "../../src/Ops/Ops.js"
import { parse, parseLine } from "../../src/Ops/Prometheus.js"

describe("Prometheus text format", () => {
  it("reads names, labels (escapes included), values and ignores comments, timestamps and junk", () => {
    const text = [
      "# HELP opsdesk_worker_processed_total Events processed",
      "# TYPE opsdesk_worker_processed_total counter",
      "opsdesk_worker_processed_total{event=\"ticket.created\",otel_scope_name=\"x\"} 12",
      "up 1 1700000000000",
      "weird{msg=\"a \\\"quoted\\\" \\\\ back, slash\\nnew line\", other = \"}\"} +Inf",
      "opsdesk_worker_lag_seconds_bucket{le=\"+Inf\"} 3e2",
      "not a sample line",
      "broken{event=\"unterminated} 5",
      "nan_gauge NaN",
      ""
    ].join("\n")
    const samples = parse(text)
    expect(samples.map((s) => s.name)).toEqual([
      "opsdesk_worker_processed_total",
      "up",
      "weird",
      "opsdesk_worker_lag_seconds_bucket",
      "nan_gauge"
    ])
    expect(samples[0]).toEqual({
      name: "opsdesk_worker_processed_total",
      labels: { event: "ticket.created", otel_scope_name: "x" },
      value: 12
    })
    expect(samples[1]).toEqual({ name: "up", labels: {}, value: 1 })
    expect(samples[2]!.labels).toEqual({ msg: "a \"quoted\" \\ back, slash\nnew line", other: "}" })
    expect(samples[2]!.value).toBe(Number.POSITIVE_INFINITY)
    expect(samples[3]!.value).toBe(300)
    expect(Number.isNaN(samples[4]!.value)).toBe(true)
    expect(parseLine("x{a=\"1\"}")).toBeNull()
  })

  it("sums the worker's counters per event over label sets, always lists the four events, and averages the histograms", () => {
    const text = [
      "opsdesk_worker_processed_total{event=\"message.sent\",otel_scope_name=\"a\"} 2",
      "opsdesk_worker_processed_total{event=\"message.sent\",otel_scope_name=\"b\"} 3",
      "opsdesk_worker_poison_total{event=\"bogus.event\"} 1",
      "opsdesk_worker_failed_total{event=\"message.sent\"} 4",
      "opsdesk_worker_lag_seconds_sum{event=\"message.sent\"} 1.5",
      "opsdesk_worker_lag_seconds_count{event=\"message.sent\"} 3",
      "opsdesk_outbox_backlog 99",
      "opsdesk_worker_processed_total{event=\"ticket.created\"} NaN"
    ].join("\n")
    const { events, totals } = workerStats(parse(text))
    expect(events.map((e) => e.event)).toEqual([
      "ticket.created",
      "ticket.updated",
      "ticket.status_changed",
      "message.sent",
      "bogus.event"
    ])
    const sent = events.find((e) => e.event === "message.sent")!
    expect(sent).toMatchObject({ processed: 5, failed: 4, deadLettered: 4, avgProcessingMs: null, avgLagMs: 500 })
    expect(events.find((e) => e.event === "bogus.event")).toMatchObject({ poison: 1, deadLettered: 1 })
    expect(totals).toEqual({ processed: 5, failed: 4, retried: 0, duplicates: 0, poison: 1, deadLettered: 5 })
  })
})
