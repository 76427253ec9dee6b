/**
 * `npm start`: applies migrations, then runs the API, the outbox relay and the
 * worker as three child processes with their output prefixed. The API runs
 * with OUTBOX_RELAY=off: in its own process the relay's round trips never wait
 * behind request handling (README, Benchmarks). Ctrl-C (SIGINT) or SIGTERM is
 * passed to all three; it exits when all have stopped (non-zero if one failed).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { LoggingLive } from "../Logging.js"
import { PgLive, runMigrations } from "../Store/Sql.js"

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))

/** Runs one entrypoint; fails with its exit code if it stops with a non-zero one. */
const run = (name: string, file: string, env: NodeJS.ProcessEnv = {}) =>
  Effect.async<void, { readonly name: string; readonly code: number }>((resume) => {
    const child: ChildProcess = spawn(process.execPath, [...process.execArgv, here(file)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env }
    })
    const prefix = (chunk: Buffer) =>
      chunk.toString().split("\n").filter((l) => l.length > 0).map((l) => `[${name}] ${l}\n`).join("")
    child.stdout!.on("data", (d: Buffer) => process.stdout.write(prefix(d)))
    child.stderr!.on("data", (d: Buffer) => process.stderr.write(prefix(d)))
    child.once("exit", (code) => {
      // Killed by a signal (SIGKILL, the OOM killer) is a failure: the others must not run on without it.
      const status = code ?? 1
      resume(status === 0 ? Effect.void : Effect.fail({ name, code: status }))
    })
    // Interrupted (Ctrl-C / SIGTERM on this process): ask the child to stop and wait for it.
    return Effect.async<void>((done) => {
      if (child.exitCode !== null) return done(Effect.void)
      child.once("exit", () => done(Effect.void))
      child.kill("SIGTERM")
    })
  })

Effect.gen(function*() {
  yield* runMigrations.pipe(Effect.provide(PgLive))
  // Beside this file: the sources under tsx (npm run dev), or the bundles in dist/ (npm start).
  const ext = import.meta.url.endsWith(".ts") ? "ts" : "mjs"
  // If one of them dies, the others are stopped too (Effect.all interrupts them).
  yield* Effect.all([
    run("api", `./api.${ext}`, { OUTBOX_RELAY: "off" }),
    run("relay", `./relay.${ext}`),
    run("worker", `./worker.${ext}`)
  ], {
    concurrency: "unbounded",
    discard: true
  }).pipe(
    Effect.catchAll(({ code, name }) =>
      Effect.logError(`The ${name} stopped with exit code ${code}; stopped the other processes too`).pipe(
        Effect.zipRight(Effect.sync(() => (process.exitCode = 1)))
      )
    )
  )
}).pipe(Effect.provide(LoggingLive), NodeRuntime.runMain({ disablePrettyLogger: true }))
