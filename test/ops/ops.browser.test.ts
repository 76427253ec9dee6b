/**
 * The ops dashboard end to end, in headless Chromium (Debian's `chromium`,
 * driven by playwright-core; no browser is downloaded). In this process: the
 * API (real HttpLive on a real port), the real worker (WorkerLive with a
 * fault switch) and one OpenTelemetry SDK whose Prometheus exporter serves
 * the process's metrics on its own port, exactly as the worker's does; the
 * dashboard scrapes it through WORKER_METRICS_URL. PostgreSQL is the tests'
 * database; RabbitMQ a vhost of this file's own.
 *
 * Scenario: a message.sent event fails on every attempt and lands in the
 * DLQ; an admin signs in, sees it with its reason, the fault is fixed, they
 * click Replay, and the row disappears while the worker's processed count
 * goes up (and processed_events has the row).
 *
 * Chromium must be there (CI installs it in .ci/run): without it this test
 * fails, it is never skipped. CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import type { ConfirmChannel } from "amqplib"
import { Context, Effect, Layer, Ref } from "effect"
import { existsSync, mkdirSync } from "node:fs"
import { resolve } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { MigrateOnStart } from "../../src/App/ApiProcess.js"
import { HttpLive } from "../../src/App/Server.js"
import { Tokens } from "../../src/Auth/Tokens.js"
import { declareTopology, DLQ, EXCHANGE } from "../../src/Broker/Topology.js"
import type { DomainEvent } from "../../src/Domain/Events.js"
import { FatalLive } from "../../src/Fatal.js"
import * as Otel from "../../src/Observability/Otel.js"
import type { Overview } from "../../src/Ops/Domain.js"
import { RedisLive } from "../../src/Store/Redis.js"
import { PgLive } from "../../src/Store/Sql.js"
import { TicketListCacheLive } from "../../src/Tickets/ListCache.js"
import { WorkerLive } from "../../src/Worker/Consumer.js"
import { EventStoreLive } from "../../src/Worker/EventStore.js"
import { Faults, HandlerError } from "../../src/Worker/Faults.js"
import { WorkerMetricsLive } from "../../src/Worker/Metrics.js"
import { makeFixtures, PASSWORD } from "../api/support/Fixtures.js"
import { FakePublisher, PassThroughCache } from "../api/support/Layers.js"
import { deadLetter, depth, reset } from "../dlq/support.js"
import { withEntities } from "../support/Entities.js"
import {
  configFrom,
  countRows,
  deleteEventRows,
  messageSent,
  ticketCreated,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"
import { freePort, serverUrl } from "./support.js"

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]
const SCREENSHOT = "/tmp/ops.png"
/** Where each panel's screenshot is kept (a test artifact; .gitignore'd). */
const ARTIFACTS = resolve(".artifacts/dashboard")

const NOTHING = { processed: 0, failed: 0, retried: 0, duplicates: 0, poison: 0, deadLettered: 0 }
/** An overview with RabbitMQ and the worker away. */
const DEGRADED: Overview = {
  generatedAt: new Date().toISOString(),
  queues: { available: false, error: "Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:5672", items: [] },
  outbox: { available: true, error: null, backlog: 3, oldestUnpublishedSeconds: 75, unroutable: 2 },
  worker: {
    available: false,
    error: "worker metrics unavailable: connect ECONNREFUSED 127.0.0.1:9464",
    url: "http://127.0.0.1:9464/metrics",
    scrapedAt: null,
    events: [],
    totals: NOTHING
  },
  workers: {
    available: false,
    error: "worker registry unavailable: the database is unreachable",
    ttlSeconds: 30,
    live: 0,
    scrapedAt: null,
    items: [],
    events: [],
    totals: NOTHING
  },
  deliveries: {
    available: true,
    error: null,
    channels: [],
    pending: 0,
    failed: 0,
    oldestPendingSeconds: null,
    latestFailed: []
  },
  broker: { publisher: null, connections: [] },
  webhooks: {
    available: true,
    error: null,
    disabled: 1,
    items: [{
      id: "0b7c4f52-9d3e-4a8e-9f0e-2a1d3c4b5e6f",
      url: "https://hooks.example.com/opsdesk",
      disabledAt: new Date().toISOString(),
      disabledReason: "disabled after 25 failed attempts in a row; the last: the receiver answered 503"
    }]
  },
  dlq: {
    available: false,
    error: "Cannot connect to RabbitMQ: connect ECONNREFUSED 127.0.0.1:5672",
    depth: null,
    limit: 50,
    entries: []
  }
}

/** Event types whose handler fails on every attempt. */
class BrokenEvents extends Context.Tag("test/ops/BrokenEvents")<BrokenEvents, Ref.Ref<ReadonlySet<string>>>() {}

const FaultSwitch = Layer.effectContext(
  Effect.gen(function*() {
    const broken = yield* Ref.make<ReadonlySet<string>>(new Set())
    const faults = Faults.of({
      enabled: true,
      check: (event) =>
        Effect.flatMap(
          Ref.get(broken),
          (set) =>
            set.has(event.event)
              ? Effect.fail(new HandlerError({ message: `Simulated failure: ${event.event} handler is broken` }))
              : Effect.void
        )
    })
    return Context.make(BrokenEvents, broken).pipe(Context.add(Faults, faults))
  })
)

const launchBrowser = Effect.acquireRelease(
  Effect.suspend(() =>
    existsSync(CHROMIUM)
      ? Effect.promise(() => chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }))
      : Effect.dieMessage(
        `Chromium is not installed at ${CHROMIUM}: install it with 'apt-get install -y chromium' (.ci/run does) or set CHROMIUM_PATH. ` +
          "The ops dashboard's browser test does not skip."
      )
  ),
  (browser) => Effect.promise(() => browser.close())
)

class E2E extends Context.Tag("test/ops/E2E")<E2E, {
  readonly baseUrl: string
  readonly channel: ConfirmChannel
  readonly browser: Browser
}>() {}

/** API + worker in this process, sharing PostgreSQL, Redis and the SDK (whose exporter serves :metricsPort/metrics). */
const TestEnv = Layer.scopedContext(
  Effect.gen(function*() {
    const { url } = yield* withVhost("opsui")
    const { channel } = yield* withAmqp(url)
    yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })
    const metricsPort = yield* freePort
    const config = configFrom({
      AMQP_URL: url,
      WORKER_METRICS_URL: `http://127.0.0.1:${metricsPort}/metrics`,
      MAX_RETRIES: 1,
      RETRY_INITIAL_DELAY_MS: 100,
      RETRY_MAX_DELAY_MS: 100,
      IMMEDIATE_RETRIES: 0,
      METRICS_INTERVAL_MS: 600_000,
      OPS_HISTORY_INTERVAL_MS: 500,
      AMQP_RECONNECT_INITIAL_MS: 100,
      AMQP_RECONNECT_MAX_MS: 500,
      // This file's own failed-login counters: other files' failures from 127.0.0.1 must not lock the browser out.
      LOGIN_THROTTLE_PREFIX: `opsdesk-test:ops-e2e:${process.pid}-${Date.now()}:login:`
    })
    const api = HttpLive.pipe(
      Layer.provideMerge(Layer.mergeAll(PassThroughCache, FakePublisher, Tokens.Default)),
      Layer.provideMerge(NodeHttpServer.layerTest)
    )
    const worker = WorkerLive.pipe(
      Layer.provide(Layer.mergeAll(EventStoreLive, TicketListCacheLive(), WorkerMetricsLive, FatalLive))
    )
    const app = Layer.mergeAll(api, worker).pipe(
      Layer.provideMerge(FaultSwitch),
      Layer.provide(MigrateOnStart),
      Layer.provide(Otel.layer({ serviceName: "opsdesk-ops-e2e", metricsPort })),
      Layer.provideMerge(Layer.merge(PgLive, RedisLive))
    )
    const ctx = yield* Layer.build(app).pipe(Effect.withConfigProvider(config))
    const baseUrl = yield* serverUrl.pipe(
      Effect.provideService(HttpServer.HttpServer, Context.get(ctx, HttpServer.HttpServer))
    )
    const browser = yield* launchBrowser
    return Context.add(ctx, E2E, { baseUrl, channel, browser })
  })
)

const publish = (channel: ConfirmChannel, event: DomainEvent) =>
  Effect.promise(async () => {
    channel.publish(EXCHANGE, event.event, Buffer.from(JSON.stringify(event)), {
      persistent: true,
      contentType: "application/json",
      messageId: event.eventId
    })
    await channel.waitForConfirms()
  })

/** A page in a fresh context; console errors and failed requests are collected (a CSP violation shows up there). */
const openPage = (browser: Browser) =>
  Effect.gen(function*() {
    const context = yield* Effect.acquireRelease(
      Effect.promise(() => browser.newContext({ viewport: { width: 1360, height: 900 } })),
      (c) => Effect.promise(() => c.close())
    )
    const page = yield* Effect.promise(() => context.newPage())
    const problems: Array<string> = []
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(m.text())
    })
    page.on("pageerror", (e) => problems.push(e.message))
    page.on("dialog", (d) => void d.accept())
    return { page, problems }
  })

const ui = <A>(f: () => Promise<A>) => Effect.promise(f)

const signIn = (page: Page, username: string) =>
  ui(async () => {
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
  })

/** The count in a worker table cell (`worker-<counter>-<event>`). */
const workerCount = (page: Page, counter: string, event: string) =>
  ui(async () =>
    Number((await page.textContent(`[data-testid="worker-${counter}-${event}"] .count`))?.replace(/,/g, "") ?? NaN)
  )

layer(TestEnv, { excludeTestServices: true, timeout: "120 seconds" })("ops dashboard in a browser", (it) => {
  it.scoped("an admin sees a dead-lettered event with its reason, replays it after the fix, and watches it processed", () =>
    Effect.gen(function*() {
      const { baseUrl, browser, channel } = yield* E2E
      const broken = yield* BrokenEvents
      yield* reset(channel)
      const fx = yield* makeFixtures
      const admin = yield* fx.user("admin")
      const agent = yield* fx.user("agent")
      const event = messageSent()
      yield* Effect.addFinalizer(() => deleteEventRows([event.eventId]))
      yield* withEntities([event])
      const { page, problems } = yield* openPage(browser)

      // Not signed in: the login form. An agent is turned away with a message.
      yield* ui(() => page.goto(`${baseUrl}/ops`))
      yield* ui(() => page.waitForSelector("#login-view:not([hidden])"))
      yield* ui(() => page.screenshot({ path: "/tmp/ops-login.png" }))
      yield* signIn(page, agent.username)
      yield* ui(() => page.waitForSelector("#login-error:not([hidden])"))
      expect(yield* ui(() => page.textContent("#login-error"))).toContain("admins only")
      expect(yield* ui(() => page.isHidden("#dashboard"))).toBe(true)

      // A wrong password says so.
      yield* ui(async () => {
        await page.fill("#username", admin.username)
        await page.fill("#password", "not-the-password")
        await page.click("#login-submit")
        await page.waitForFunction(() =>
          document.querySelector("#login-error")?.textContent === "Wrong username or password."
        )
      })

      // The admin gets the dashboard: five queues, the worker's metrics scraped from its exporter.
      yield* signIn(page, admin.username)
      yield* ui(() => page.waitForSelector("#dashboard:not([hidden])"))
      yield* ui(() => page.waitForSelector("[data-testid='worker-processed-message.sent']"))
      expect(yield* ui(() => page.locator("#queues-body tr").count())).toBe(5)
      expect(yield* ui(() => page.textContent("#user-name"))).toBe(admin.username)
      expect(yield* ui(() => page.isHidden("#worker-card .panel-error"))).toBe(true)
      expect(yield* ui(() => page.textContent("#worker-url"))).toContain("/metrics")
      const processedBefore = yield* workerCount(page, "processed", "message.sent")
      const deadBefore = yield* workerCount(page, "deadLettered", "message.sent")

      // message.sent's handler is broken: the event is retried once, then dead-lettered.
      yield* Ref.set(broken, new Set(["message.sent"]))
      yield* publish(channel, event)
      const row = `#dlq-body tr[data-event-id="${event.eventId}"]`
      yield* ui(() => page.waitForSelector(row, { timeout: 20_000 }))
      expect(yield* ui(() => page.textContent(`${row} [data-testid=dlq-error]`))).toBe(
        "Simulated failure: message.sent handler is broken"
      )
      const cells = yield* ui(() => page.locator(`${row} td`).allTextContents())
      expect(cells.slice(0, 5)).toEqual(["message.sent", event.eventId, "message.sent", "2", "failed"])
      yield* ui(() =>
        page.waitForFunction(() => document.querySelector("[data-testid=dlq-depth]")?.textContent === "1")
      )
      yield* ui(() =>
        page.waitForFunction(
          (n) =>
            Number(document.querySelector("[data-testid='worker-deadLettered-message.sent'] .count")?.textContent) ===
              n,
          deadBefore + 1
        )
      )
      expect(yield* countRows("processed_events", [event.eventId])).toBe(0)
      // One more poll, so the rates have a previous sample.
      yield* Effect.sleep("2200 millis")
      yield* ui(() => page.screenshot({ path: SCREENSHOT, fullPage: true }))

      // Fixed; Replay: the row goes away, the worker processes it, the count goes up.
      yield* Ref.set(broken, new Set())
      yield* ui(() => page.click(`${row} button[data-action=replay]`))
      yield* ui(() => page.waitForSelector("#banner.success:not([hidden])"))
      expect(yield* ui(() => page.textContent("#banner"))).toBe("Replayed 1 message.")
      yield* ui(() => page.waitForSelector(row, { state: "detached", timeout: 10_000 }))
      yield* waitUntil(
        "the replayed event to be processed",
        Effect.map(countRows("processed_events", [event.eventId]), (n) => n === 1)
      )
      yield* ui(() =>
        page.waitForFunction(
          (n) =>
            Number(document.querySelector("[data-testid='worker-processed-message.sent'] .count")?.textContent) === n,
          processedBefore + 1,
          { timeout: 10_000 }
        )
      )
      expect(yield* ui(() => page.textContent("#dlq-body"))).toContain("The dead-letter queue is empty.")
      expect(yield* depth(channel, DLQ)).toBe(0)
      yield* ui(() => page.screenshot({ path: "/tmp/ops-after.png", fullPage: true }))

      // Sources down: each panel says why. The API failing: a message, the last data stays, and it recovers.
      yield* ui(() =>
        page.route(
          "**/ops/api/overview",
          (route) => route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(DEGRADED) })
        )
      )
      yield* ui(() =>
        page.waitForFunction(() => document.querySelector("#worker-body")?.textContent === "worker metrics unavailable")
      )
      expect(yield* ui(() => page.textContent("#queues-card .panel-error"))).toBe(DEGRADED.queues.error)
      expect(yield* ui(() => page.textContent("#worker-card .panel-error"))).toBe(DEGRADED.worker.error)
      expect(yield* ui(() => page.textContent("[data-testid=outbox-oldest]"))).toBe("oldest unpublished: 1m 15s")
      expect(yield* ui(() => page.textContent("[data-testid=outbox-unroutable]"))).toBe(
        "2 unroutable (no queue bound): waiting for a route"
      )
      expect(yield* ui(() => page.textContent("#status-text"))).toContain("3 sources unavailable")
      expect(yield* ui(() => page.textContent("[data-testid=webhooks-disabled]"))).toBe(
        "1 webhook subscription is disabled after failing: https://hooks.example.com/opsdesk (disabled after 25 failed attempts in a row; the last: the receiver answered 503). Re-enable with PATCH /v1/webhooks/{id} {\"active\": true}."
      )
      yield* ui(() => page.screenshot({ path: "/tmp/ops-degraded.png", fullPage: true }))
      yield* ui(() => page.unroute("**/ops/api/overview"))
      yield* ui(() =>
        page.route(
          "**/ops/api/overview",
          (route) =>
            route.fulfill({
              status: 500,
              contentType: "application/json",
              body: JSON.stringify({ _tag: "InternalServerError", message: "internal server error" })
            })
        )
      )
      yield* ui(() => page.waitForSelector("#banner.error:not([hidden])"))
      expect(yield* ui(() => page.textContent("#banner"))).toBe("internal server error")
      expect(yield* ui(() => page.textContent("#status-text"))).toBe("Update failed")
      expect(yield* ui(() => page.isVisible("#dashboard"))).toBe(true)
      yield* ui(() => page.unroute("**/ops/api/overview"))
      yield* ui(() => page.waitForSelector("#banner", { state: "hidden" }))
      yield* ui(() =>
        page.waitForFunction(() => document.querySelector("#status-text")?.textContent?.startsWith("Updated") === true)
      )

      // Signing out forgets the token.
      yield* ui(() => page.click("#logout"))
      yield* ui(() => page.waitForSelector("#login-view:not([hidden])"))
      expect(yield* ui(() => page.evaluate(() => sessionStorage.length))).toBe(0)

      // The agent's refused sign-in logged a 403; nothing else went wrong (no CSP violation, no script error).
      expect(problems.filter((p) => !/status of (40[13]|500)/.test(p))).toEqual([])
    }))
  it.scoped(
    "every panel: charts drawn, a page 2 of the DLQ, search, filters, the message view with copy, deliveries retry",
    () =>
      Effect.gen(function*() {
        const { baseUrl, browser, channel } = yield* E2E
        yield* reset(channel)
        const fx = yield* makeFixtures
        const admin = yield* fx.user("admin")
        mkdirSync(ARTIFACTS, { recursive: true })
        const shot = (page: Page, selector: string, panel: string) =>
          ui(() => page.locator(selector).screenshot({ path: `${ARTIFACTS}/${panel}.png` }))

        // 55 dead letters (more than one page): 45 message.sent, 7 ticket.created, 3 poison ticket.updated.
        // In queue order, so the first page ends with created[4].
        const sent = Array.from({ length: 45 }, () => messageSent())
        const created = Array.from({ length: 7 }, () => ticketCreated())
        for (const e of [...sent, ...created]) {
          yield* deadLetter(channel, e, { error: "Simulated failure", attempts: 2 })
        }
        for (let i = 0; i < 3; i++) yield* deadLetter(channel, { event: "ticket.updated", body: `{broken ${i}` })
        yield* Effect.addFinalizer(() => reset(channel))

        // Two failed deliveries, one per channel.
        const sql = yield* SqlClient.SqlClient
        const tag = crypto.randomUUID()
        const deliveries = yield* sql<{ id: string; channel: string }>`
        INSERT INTO deliveries (idempotency_key, channel, event_id, event_type, payload, state, attempts, last_error)
        VALUES (${`${tag}-e`}, 'email', ${tag}, 'ticket.created', '{}'::json, 'failed', 5, 'SMTP 554 rejected'),
          (${`${tag}-w`}, 'webhook', ${tag}, 'ticket.created', '{}'::json, 'failed', 5, 'the receiver answered 500')
        RETURNING id::text AS id, channel`
        yield* Effect.addFinalizer(() => sql`DELETE FROM deliveries WHERE event_id = ${tag}`.pipe(Effect.orDie))

        const { page, problems } = yield* openPage(browser)
        yield* ui(() => page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseUrl }))
        yield* ui(() => page.goto(`${baseUrl}/ops`))
        yield* signIn(page, admin.username)
        yield* ui(() => page.waitForSelector("#dashboard:not([hidden])"))

        // Charts: uPlot drew each of the four, from at least three samples of the history.
        yield* ui(() =>
          page.waitForFunction(() => Number(document.querySelector("#chart-queues")?.getAttribute("data-points")) >= 3)
        )
        for (const id of ["chart-throughput", "chart-failures", "chart-lag", "chart-queues"]) {
          const painted = yield* ui(() =>
            page.evaluate((id) => {
              const canvas = document.querySelector<HTMLCanvasElement>(`#${id} canvas`)
              if (canvas === null || canvas.width === 0) return 0
              const pixels = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data
              let n = 0
              for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) n++
              return n
            }, id)
          )
          expect(painted, id).toBeGreaterThan(0)
        }
        // The queue chart's legend names every queue, the DLQ included.
        expect(yield* ui(() => page.textContent("#chart-queues .u-legend"))).toContain("tickets.dlq")
        yield* shot(page, "#charts-card", "charts")
        yield* shot(page, ".tiles", "tiles")
        yield* shot(page, "#queues-card", "queues")
        yield* shot(page, "#worker-card", "worker")
        yield* shot(page, "#workers-card", "workers")

        // Paging: 50 on the first page, the other 5 on the second.
        const rows = "#dlq-body tr[data-dlq-id]"
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 50, rows))
        const firstPage = yield* ui(() =>
          page.locator(rows).evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-dlq-id")))
        )
        yield* shot(page, "#dlq-card", "dlq")
        // Next clicked twice before page 2 is drawn: page 2, not a third page of page 2's rows.
        yield* ui(() =>
          page.evaluate(() => {
            const next = document.querySelector<HTMLButtonElement>("#dlq-next")!
            next.click()
            next.click()
          })
        )
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 5, rows))
        expect(yield* ui(() => page.textContent("[data-testid=dlq-page]"))).toBe("Page 2")
        expect(yield* ui(() => page.textContent("#dlq-hint"))).toBe("entries 51\u201355 of 55")
        const secondPage = yield* ui(() =>
          page.locator(rows).evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-dlq-id")))
        )
        expect(secondPage.filter((id) => firstPage.includes(id))).toEqual([])
        expect(yield* ui(() => page.isDisabled("#dlq-next"))).toBe(true)
        yield* shot(page, "#dlq-card", "dlq-page2")

        // An entry before this page leaves the DLQ (discarded from elsewhere): the page keeps its rows.
        const discard = (id: string) =>
          ui(() =>
            page.evaluate(async (id) => {
              const r = await fetch("/ops/api/dlq/discard", {
                method: "POST",
                headers: {
                  "content-type": "application/json",
                  authorization: `Bearer ${sessionStorage.getItem("opsdesk.ops.token")}`
                },
                body: JSON.stringify({ id })
              })
              return r.status
            }, id)
          )
        expect(yield* discard(firstPage[0]!)).toBe(200)
        yield* ui(() =>
          page.waitForFunction(() => document.querySelector("#dlq-hint")?.textContent === "entries 50\u201354 of 54")
        )
        expect(
          yield* ui(() => page.locator(rows).evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-dlq-id"))))
        )
          .toEqual(secondPage)
        // The entry it follows leaves too: the dashboard says so and goes back to the first page.
        const quiet = problems.length
        expect(yield* discard(firstPage[49]!)).toBe(200)
        yield* ui(() => page.waitForSelector("#banner.error:not([hidden])"))
        expect(yield* ui(() => page.textContent("#banner"))).toContain("has left")
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 50, rows))
        expect(yield* ui(() => page.textContent("[data-testid=dlq-page]"))).toBe("Page 1")
        // The browser logs the 404 it was answered: expected here, and nothing else.
        expect(problems.splice(quiet).filter((p) => !p.includes("404"))).toEqual([])

        // Search by event id: that one row.
        const wanted = sent[44]!
        yield* ui(async () => {
          await page.fill("#dlq-search", wanted.eventId)
          await page.press("#dlq-search", "Enter")
        })
        const wantedRow = `#dlq-body tr[data-event-id="${wanted.eventId}"]`
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 1, rows))
        yield* ui(() => page.waitForSelector(wantedRow))
        expect(yield* ui(() => page.textContent("[data-testid=dlq-page]"))).toBe("Page 1")
        yield* shot(page, "#dlq-card", "dlq-search")

        // The message view: headers and the pretty-printed body; Copy puts the body on the clipboard.
        yield* ui(() => page.click(`${wantedRow} button[data-action=view]`))
        yield* ui(() => page.waitForSelector("#message-view[data-loaded]"))
        const headers = JSON.parse((yield* ui(() => page.textContent("[data-testid=message-headers]"))) ?? "{}")
        expect(headers).toMatchObject({ "opsdesk-error": "Simulated failure", "opsdesk-error-kind": "failed" })
        const body = (yield* ui(() => page.textContent("[data-testid=message-body]"))) ?? ""
        expect(body).toBe(JSON.stringify(wanted, null, 2))
        yield* shot(page, "#message-view .modal", "message")
        yield* ui(() => page.click("#copy-body"))
        yield* ui(() => page.waitForFunction(() => document.querySelector("#copy-body")?.textContent === "Copied"))
        expect(yield* ui(() => page.evaluate(() => navigator.clipboard.readText()))).toBe(body)
        yield* ui(() => page.click("#copy-headers"))
        yield* ui(() => page.waitForFunction(() => document.querySelector("#copy-headers")?.textContent === "Copied"))
        expect(JSON.parse(yield* ui(() => page.evaluate(() => navigator.clipboard.readText())))).toEqual(headers)
        yield* ui(() => page.keyboard.press("Escape"))
        yield* ui(() => page.waitForSelector("#message-view", { state: "hidden" }))

        // Filters: by type, then type and kind together.
        yield* ui(() => page.click("#dlq-clear"))
        yield* ui(() => page.selectOption("#dlq-event", "ticket.created"))
        // 6: one of the 7 was discarded above.
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 6, rows))
        expect(new Set(yield* ui(() => page.locator(`${rows} td:first-child`).allTextContents()))).toEqual(
          new Set(["ticket.created"])
        )
        yield* ui(() => page.selectOption("#dlq-event", "ticket.updated"))
        yield* ui(() => page.selectOption("#dlq-kind", "poison"))
        yield* ui(() => page.waitForFunction((sel) => document.querySelectorAll(sel).length === 3, rows))
        expect(new Set(yield* ui(() => page.locator(`${rows} .chip`).allTextContents()))).toEqual(new Set(["poison"]))
        yield* shot(page, "#dlq-card", "dlq-filter")
        yield* ui(() => page.selectOption("#dlq-kind", "failed"))
        yield* ui(() =>
          page.waitForFunction(() => document.querySelector("#dlq-body")?.textContent === "No dead letter matches.")
        )
        yield* ui(() => page.click("#dlq-clear"))

        // Deliveries: per channel, the failed ones listed; Retry puts one back to pending.
        const email = deliveries.find((d) => d.channel === "email")!
        const emailRow = `#deliveries-failed tr[data-delivery-id="${email.id}"]`
        yield* ui(() => page.waitForSelector(emailRow))
        expect(yield* ui(() => page.textContent(emailRow))).toContain("SMTP 554 rejected")
        yield* shot(page, "#deliveries-card", "deliveries")
        yield* ui(() => page.click(`${emailRow} button[data-action=retry-delivery]`))
        yield* ui(() => page.waitForSelector("#banner.success:not([hidden])"))
        expect(yield* ui(() => page.textContent("#banner"))).toBe("Retried 1 delivery.")
        const audit = yield* sql<{ entityId: string }>`
        SELECT entity_id FROM audit_log WHERE actor_id = ${admin.id} AND action = 'deliveries.retry'`
        expect(audit).toEqual([{ entityId: email.id }])
        yield* ui(() => page.screenshot({ path: `${ARTIFACTS}/dashboard.png`, fullPage: true }))

        expect(problems).toEqual([])
        yield* Effect.sync(() => console.log(`ops dashboard screenshots: ${ARTIFACTS}/*.png`))
      }),
    240_000
  )
})
