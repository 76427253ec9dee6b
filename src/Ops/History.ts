/**
 * The dashboard's last hour: samples the API process takes every
 * OPS_HISTORY_INTERVAL_MS, in a ring of its memory, turned into the points
 * the charts draw (rates and the lag between two samples).
 *
 * Why in memory: the workers table holds each worker's counters as of now
 * only, so history needs samples taken over time somewhere; one small ring
 * per API costs no writes, and the dashboard is served by the API anyway. The
 * price: each API has its own, and a restart starts afresh.
 */
import type { WorkerCounters } from "./Domain.js"

export const WINDOW_SECONDS = 3600
/** Never more samples than this, whatever the interval (one a second for an hour). */
const MAX_SAMPLES = 3600

export interface HistorySample {
  readonly at: number
  /** Every live worker's counters summed (or the scraped worker's); null when no source answered. */
  readonly counters: Pick<WorkerCounters, "processed" | "deadLettered" | "retried"> | null
  readonly lag: { readonly sum: number; readonly count: number } | null
  readonly queues: Readonly<Record<string, number>> | null
}

export interface HistoryPoint {
  readonly at: string
  readonly processedPerSecond: number | null
  readonly failedPerSecond: number | null
  readonly retriedPerSecond: number | null
  readonly avgLagMs: number | null
  readonly queues: Readonly<Record<string, number>> | null
}

export const capacityFor = (intervalMs: number): number =>
  Math.max(2, Math.min(MAX_SAMPLES, Math.ceil((WINDOW_SECONDS * 1000) / Math.max(1, intervalMs)) + 1))

/** A bounded ring: the oldest sample goes once `capacity` are held. */
export const makeRing = (capacity: number) => {
  const samples: Array<HistorySample> = []
  return {
    add: (sample: HistorySample) => {
      samples.push(sample)
      if (samples.length > capacity) samples.splice(0, samples.length - capacity)
    },
    /** Those of the last hour before `now`, oldest first. */
    snapshot: (now: number): ReadonlyArray<HistorySample> => samples.filter((s) => s.at >= now - WINDOW_SECONDS * 1000),
    get size() {
      return samples.length
    }
  }
}

/** A counter's rate between two samples; null when one is missing or it went down (a worker restarted or left). */
const rate = (before: number | undefined, after: number | undefined, seconds: number): number | null =>
  before === undefined || after === undefined || !(seconds > 0) || after < before ? null : (after - before) / seconds

export const toPoints = (samples: ReadonlyArray<HistorySample>): ReadonlyArray<HistoryPoint> =>
  samples.map((s, i): HistoryPoint => {
    const prev = i > 0 ? samples[i - 1] : undefined
    const seconds = prev === undefined ? 0 : (s.at - prev.at) / 1000
    const dSum = prev?.lag && s.lag ? s.lag.sum - prev.lag.sum : null
    const dCount = prev?.lag && s.lag ? s.lag.count - prev.lag.count : null
    return {
      at: new Date(s.at).toISOString(),
      processedPerSecond: rate(prev?.counters?.processed, s.counters?.processed, seconds),
      failedPerSecond: rate(prev?.counters?.deadLettered, s.counters?.deadLettered, seconds),
      retriedPerSecond: rate(prev?.counters?.retried, s.counters?.retried, seconds),
      avgLagMs: dSum !== null && dCount !== null && dCount > 0 && dSum >= 0 ? (dSum / dCount) * 1000 : null,
      queues: s.queues
    }
  })
