/**
 * The real worker entrypoint as a child process, as production runs it (the
 * bundle test/globalSetup.ts builds): SIGTERM mid-load stops it
 * cleanly (exit 0, the seed's log line), and after a restart every event has
 * been processed exactly once: nothing lost, nothing doubled.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { declareTopology, EXCHANGE } from "../../src/Broker/Topology.js"
import { withEntities } from "../support/Entities.js"
import { countRows, deleteEventRows, InfraLive, ticketCreated, waitUntil, withAmqp, withVhost } from "../support/Env.js"

const N = 1500

const spawnWorker = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["dist/worker.mjs"], {
        env: {
          ...process.env,
          AMQP_URL: url,
          // Slow it down so the signal lands mid-load: one event per transaction.
          PREFETCH: "10",
          WORKER_BATCH_SIZE: "1",
          WORKER_CONCURRENCY: "1",
          SHUTDOWN_TIMEOUT_MS: "5000",
          WORKER_METRICS_PORT: "0",
          LOG_LEVEL: "Warning"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout!.on("data", (d) => (output += d))
      child.stderr!.on("data", (d) => (output += d))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      return { child, exited, output: () => output }
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
  )

const stop = (child: ChildProcess, exited: Promise<number | null>) =>
  Effect.sync(() => child.kill("SIGTERM")).pipe(Effect.zipRight(Effect.promise(() => exited)))

describe("worker shutdown", () => {
  it.live("SIGTERM mid-load loses nothing and doubles nothing", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("shutdown")
      const { channel } = yield* withAmqp(url)
      yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [1000, 2000, 4000] })
      const events = Array.from({ length: N }, () => ticketCreated())
      const ids = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() => deleteEventRows(ids))
      yield* withEntities(events)
      yield* Effect.promise(async () => {
        for (const e of events) {
          channel.publish(EXCHANGE, e.event, Buffer.from(JSON.stringify(e)), { persistent: true, messageId: e.eventId })
        }
        await channel.waitForConfirms()
      })

      const first = yield* spawnWorker(url)
      yield* waitUntil(
        "the worker to be mid-load",
        Effect.map(countRows("processed_events", ids), (n) => n >= 100),
        "60 seconds"
      )
      const code = yield* stop(first.child, first.exited)
      expect(code).toBe(0)
      expect(first.output()).toContain("SIGTERM received, shutting down gracefully...")
      const processedAtStop = yield* countRows("processed_events", ids)
      expect(processedAtStop).toBeLessThan(N)

      const second = yield* spawnWorker(url)
      yield* waitUntil(
        "every event processed",
        Effect.map(countRows("processed_events", ids), (n) => n === N),
        "90 seconds"
      )
      expect(yield* stop(second.child, second.exited)).toBe(0)
      expect(yield* countRows("processed_events", ids)).toBe(N)
      expect(yield* countRows("notifications", ids)).toBe(N)
    }).pipe(Effect.scoped, Effect.provide(InfraLive)), 180_000)
})
