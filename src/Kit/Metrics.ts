/**
 * Metrics with fixed labels whose every update finds its series at once.
 *
 * `Metric.tagged` (effect 3.22, `internal/metric.ts` `taggedWithLabels`)
 * unions its labels with the update's into a NEW array on every update, and
 * the metric's series cache is a WeakMap keyed by that array's identity: it
 * never hits, so each update builds a MetricKey, hashes it and looks it up in
 * the global registry on every request (README, Benchmarks). Here the
 * labels are one array made once, which that cache finds by identity. The
 * upstream fix would be the same in `taggedWithLabels`: keep the array when
 * the update brings no labels of its own.
 */
import { Metric, MetricLabel } from "effect"

export const withLabels = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  labels: Readonly<Record<string, string>>
): Metric.Metric<Type, In, Out> => {
  const fixed: ReadonlyArray<MetricLabel.MetricLabel> = Object.entries(labels).map(([key, value]) =>
    MetricLabel.make(key, value)
  )
  const all = (extra: ReadonlyArray<MetricLabel.MetricLabel>) => (extra.length === 0 ? fixed : [...fixed, ...extra])
  return Metric.make(
    metric.keyType,
    (input: In, extra) => metric.unsafeUpdate(input, all(extra)),
    (extra) => metric.unsafeValue(all(extra)),
    (input: In, extra) => metric.unsafeModify(input, all(extra))
  )
}
