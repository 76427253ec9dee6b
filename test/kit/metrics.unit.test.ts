import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, MetricLabel } from "effect"
import { withLabels } from "../../src/Kit/Metrics.js"

const series = (name: string) =>
  Metric.snapshot.pipe(Effect.map((pairs) => pairs.filter((p) => p.metricKey.name === name)))

describe("withLabels", () => {
  it.effect("updates one series with the fixed labels, like Metric.tagged, and adds an update's own labels", () =>
    Effect.gen(function*() {
      const name = `kit_metrics_test_${crypto.randomUUID().replace(/-/g, "_")}`
      const counter = Metric.counter(name, { incremental: true })
      const labelled = withLabels(counter, { route: "/v1/tickets", status: "201" })
      labelled.unsafeUpdate(1, [])
      labelled.unsafeUpdate(2, [])
      labelled.unsafeUpdate(1, [])
      // The same series as Metric.tagged would update.
      counter.pipe(Metric.tagged("route", "/v1/tickets"), Metric.tagged("status", "201")).unsafeUpdate(1, [])
      labelled.unsafeUpdate(5, [MetricLabel.make("extra", "x")])

      const found = yield* series(name)
      const byLabels = new Map(found.map((p) => [
        p.metricKey.tags.map((t) => `${t.key}=${t.value}`).sort().join(","),
        (p.metricState as unknown as { count: number }).count
      ]))
      expect(byLabels.get("route=/v1/tickets,status=201")).toBe(5)
      expect(byLabels.get("extra=x,route=/v1/tickets,status=201")).toBe(5)
      expect(found).toHaveLength(2)
      expect(labelled.unsafeValue([])).toEqual(
        counter.pipe(Metric.tagged("route", "/v1/tickets"), Metric.tagged("status", "201")).unsafeValue([])
      )
    }))
})
