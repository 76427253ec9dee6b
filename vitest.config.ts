import { randomBytes } from "node:crypto"
import { defineConfig } from "vitest/config"
import { TEST_DATABASE_URL } from "./test/support/testDatabase.js"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/globalSetup.ts"],
    // Tests get their own database, so a development API/worker on `opsdesk` never touches their rows.
    env: {
      DATABASE_URL: TEST_DATABASE_URL,
      LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
      // A worker started by a test must not fight a running one for the metrics port.
      WORKER_METRICS_PORT: "0",
      // Failed-login counters of this run only: never the development API's (same Redis), nor an earlier run's.
      LOGIN_THROTTLE_PREFIX: `opsdesk-test:${process.pid}-${Date.now()}:login:`,
      // A key of this run only: no secret written in the repository ever signs a token the tests accept.
      JWT_SECRET: process.env.JWT_SECRET ?? randomBytes(32).toString("hex")
    },
    // Integration suites share one PostgreSQL, Redis and RabbitMQ; files run
    // one at a time so broker vhosts, cache keys and the outbox never race.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
