/**
 * Notifications end to end below the broker: the worker's claim statement
 * (EventStore.commit with the real `plan`) decides who is told and writes the
 * email deliveries; the dispatcher sends them to a real SMTP server on
 * loopback (SmtpSink.ts), retries, gives up with the reason, and never sends
 * one twice when two dispatchers run at once. Every row a test makes is
 * removed at its end.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Duration, Effect, Layer, type Scope } from "effect"
import { spawn } from "node:child_process"
import { type DomainEvent, makeEvent } from "../../src/Domain/Events.js"
import { EmailSender } from "../../src/Notifications/Channel.js"
import { runDispatcher } from "../../src/Notifications/Dispatcher.js"
import { makeSmtpSender, messageIdOf } from "../../src/Notifications/Email.js"
import { DeliveriesRepo } from "../../src/Notifications/Repo.js"
import { deleteExpiredNotifications } from "../../src/Retention/Repo.js"
import { EventStore, EventStoreLive } from "../../src/Worker/EventStore.js"
import { plan } from "../../src/Worker/Handlers.js"
import { InfraLive, waitUntil } from "../support/Env.js"
import { type SmtpSink, smtpSink } from "./SmtpSink.js"

const retry = {
  maxRetries: 2,
  retryInitialDelay: Duration.millis(100),
  retryMaxDelay: Duration.millis(300),
  immediateRetries: 1,
  immediateRetryDelay: Duration.millis(20)
}

const dispatchSettings = {
  enabled: true,
  emailConcurrency: 4,
  webhookConcurrency: 4,
  perSubscription: 2,
  pollInterval: Duration.seconds(2),
  lease: Duration.seconds(30)
}

/** A dispatcher for the scope, sending through `sink` (its SMTP pool lives as long as the scope). */
const dispatcher = (sink: SmtpSink, timeout = Duration.seconds(5)) =>
  Effect.gen(function*() {
    const services = yield* Layer.build(
      Layer.merge(
        DeliveriesRepo.Default,
        Layer.scoped(
          EmailSender,
          makeSmtpSender({ url: sink.url, from: "OpsDesk <desk@test>", timeout, maxConnections: 4 })
        )
      )
    )
    yield* runDispatcher({ dispatch: dispatchSettings, retry }).pipe(Effect.provide(services))
  })

interface World {
  readonly users: Array<string>
  readonly tickets: Array<string>
  readonly events: Array<string>
}

/** Runs `opsdesk <args>` as a child process (stdin closed), as an operator would. */
const opsdesk = (args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resume) => {
    // The bundle globalSetup built from these sources: starts in a fraction of tsx's time.
    const child = spawn(process.execPath, ["dist/opsdesk.mjs", ...args], {
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const run = Math.random().toString(36).slice(2, 8)

/** Rows a test made, removed when its scope closes (deliveries and their attempts go with their notifications). */
const world = Effect.acquireRelease(
  Effect.sync((): World => ({ users: [], tickets: [], events: [] })),
  (w) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.all([
        sql`DELETE FROM deliveries WHERE event_id IN ${sql.in(w.events.length ? w.events : ["-"])}`,
        sql`DELETE FROM notifications WHERE event_id IN ${sql.in(w.events.length ? w.events : ["-"])}`,
        sql`DELETE FROM processed_events WHERE event_id IN ${sql.in(w.events.length ? w.events : ["-"])}`,
        sql`DELETE FROM tickets WHERE id IN ${sql.in(w.tickets.length ? w.tickets : [crypto.randomUUID()])}`,
        sql`DELETE FROM users WHERE id IN ${sql.in(w.users.length ? w.users : [crypto.randomUUID()])}`
      ], { discard: true })).pipe(Effect.orDie)
)

const addUser = (
  w: World,
  name: string,
  options: {
    readonly role?: "admin" | "agent" | "customer"
    readonly email?: string | null
    readonly prefs?: { readonly email: boolean; readonly inApp: boolean }
    readonly active?: boolean
  } = {}
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const id = crypto.randomUUID()
    const username = `${name}-${run}-${id.slice(0, 6)}`
    const email = options.email === undefined ? `${name}-${id.slice(0, 8)}@example.test` : options.email
    yield* sql`INSERT INTO users (id, username, password_hash, role, email, active)
      VALUES (${id}, ${username}, 'not-a-hash', ${options.role ?? "customer"}, ${email}, ${options.active ?? true})`
    if (options.prefs) {
      yield* sql`INSERT INTO user_preferences (user_id, email, in_app)
        VALUES (${id}, ${options.prefs.email}, ${options.prefs.inApp})`
    }
    w.users.push(id)
    return { id, username, email }
  }).pipe(Effect.orDie)

const addTicket = (w: World, ownerId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const id = crypto.randomUUID()
    yield* sql`INSERT INTO tickets (id, title, description, owner_id) VALUES (${id}, 'Printer <on> fire', 'Smoke & sparks', ${ownerId})`
    w.tickets.push(id)
    return id
  }).pipe(Effect.orDie)

const addMessage = (ticketId: string, authorId: string, content: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const id = crypto.randomUUID()
    yield* sql`INSERT INTO messages (id, ticket_id, author_id, content) VALUES (${id}, ${ticketId}, ${authorId}, ${content})`
    return id
  }).pipe(Effect.orDie)

/** Commits events as the worker does: the watchers lookup, the plans, one claim statement. */
const commit = (w: World, events: ReadonlyArray<DomainEvent>) =>
  Effect.gen(function*() {
    const store = yield* EventStore
    for (const e of events) w.events.push(e.eventId)
    const ticketIds = events.flatMap((e) => (e.event === "message.sent" ? [e.payload.ticketId] : []))
    const watchers = yield* store.watchers(ticketIds)
    const result = yield* store.commit("worker", events.map((e) => plan(e, watchers)))
    expect(result.claimed.size).toBe(events.length)
  })

interface DeliveryView {
  readonly id: string
  readonly recipientId: string
  readonly eventId: string
  readonly state: string
  readonly attempts: number
  readonly lastError: string | null
  readonly lastStatus: number | null
  readonly idempotencyKey: string
}

const deliveriesOf = (w: World) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<
        DeliveryView
      >`SELECT id::text AS id, recipient_id::text AS recipient_id, event_id, state, attempts, last_error, last_status,
        idempotency_key
      FROM deliveries WHERE event_id IN ${sql.in(w.events)} ORDER BY deliveries.id`
  ).pipe(Effect.orDie)

const notificationsOf = (w: World) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ recipientId: string; eventId: string; channel: string }>`
      SELECT recipient_id::text AS recipient_id, event_id, channel FROM notifications
      WHERE event_id IN ${sql.in(w.events)} ORDER BY id`).pipe(Effect.orDie)

const settled = (w: World) =>
  waitUntil(
    "every delivery settled",
    Effect.map(deliveriesOf(w), (ds) => ds.length > 0 && ds.every((d) => d.state !== "pending")),
    "60 seconds"
  )

const scoped = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient | EventStore | Scope.Scope>) =>
  Effect.scoped(effect).pipe(Effect.provide(EventStoreLive))

layer(InfraLive, { timeout: "120 seconds", excludeTestServices: true })(
  "notification delivery (PostgreSQL + SMTP)",
  (it) => {
    {
      it.effect(
        "the seed's steps: one email per recipient, with the policy's exclusions and preferences",
        () =>
          scoped(Effect.gen(function*() {
            const w = yield* world
            const sink = yield* smtpSink
            const customer = yield* addUser(w, "cust")
            const otherCustomer = yield* addUser(w, "other")
            const admin = yield* addUser(w, "admin", { role: "admin" })
            const agent = yield* addUser(w, "agent", { role: "agent" })
            const helper = yield* addUser(w, "helper", { role: "agent" })
            const quiet = yield* addUser(w, "quiet", { role: "agent", prefs: { email: false, inApp: true } })
            const gone = yield* addUser(w, "gone", { role: "agent", active: false })
            const noAddress = yield* addUser(w, "noaddr", { role: "agent", email: null })
            const ticketId = yield* addTicket(w, customer.id)
            const now = new Date().toISOString()
            const created = makeEvent(
              "ticket.created",
              {
                id: ticketId,
                title: "Printer <on> fire",
                description: "Smoke & sparks",
                status: "open",
                priority: "high",
                ownerId: customer.id,
                assigneeId: null,
                createdAt: now
              } as const
            )
            const assigned = makeEvent(
              "ticket.updated",
              {
                id: ticketId,
                ownerId: customer.id,
                assigneeId: agent.id,
                changedFields: ["assigneeId"],
                updatedBy: admin.id,
                updatedAt: now
              } as const
            )
            const moved = makeEvent(
              "ticket.status_changed",
              {
                id: ticketId,
                from: "open",
                to: "in_progress",
                changedBy: agent.id,
                changedAt: now,
                ownerId: customer.id,
                assigneeId: agent.id
              } as const
            )
            const content =
              `@${helper.username} @${quiet.username} @${otherCustomer.username} @${gone.username} @${noAddress.username} @${agent.username} can you look? mail me at x@${helper.username}`
            const messageId = yield* addMessage(ticketId, agent.id, content)
            const message = makeEvent(
              "message.sent",
              {
                id: messageId,
                ticketId,
                authorId: agent.id,
                content,
                sentAt: now
              } as const
            )
            yield* commit(w, [created, assigned, moved])
            yield* commit(w, [message])

            // Who was told, per event and channel (the recipients policy, at claim time).
            const notes = yield* notificationsOf(w)
            const told = (eventId: string, channel: string) =>
              notes.filter((n) => n.eventId === eventId && n.channel === channel).map((n) => n.recipientId).sort()
            const sorted = (...ids: Array<string>) => [...ids].sort()
            expect(told(created.eventId, "email")).toEqual([customer.id]) // the receipt
            expect(told(created.eventId, "in_app")).toEqual([])
            expect(told(assigned.eventId, "email")).toEqual(sorted(customer.id, agent.id)) // not the admin who assigned
            expect(told(moved.eventId, "email")).toEqual([customer.id]) // not the agent who moved it
            // The message: the owner (watcher), the mentioned helper; not the author (mentioned too), not another
            // customer, not a deactivated user; `quiet` only in-app; `noaddr` is notified but has no address.
            expect(told(message.eventId, "email")).toEqual(sorted(customer.id, helper.id, noAddress.id))
            expect(told(message.eventId, "in_app")).toEqual(sorted(customer.id, helper.id, quiet.id, noAddress.id))

            yield* dispatcher(sink)
            yield* settled(w)
            const deliveries = yield* deliveriesOf(w)
            expect(deliveries.every((d) => d.state === "delivered" && d.attempts === 1)).toBe(true)
            // One email per recipient per event, no more: noaddr has no delivery.
            const expected = [
              [created.eventId, customer.email],
              [assigned.eventId, customer.email],
              [assigned.eventId, agent.email],
              [moved.eventId, customer.email],
              [message.eventId, customer.email],
              [message.eventId, helper.email]
            ]
            yield* waitUntil("the SMTP server has every email", Effect.sync(() => sink.received().length >= 6))
            const got = sink.received()
            expect(got).toHaveLength(expected.length)
            expect(got.map((r) => r.to.join(",")).sort()).toEqual(expected.map(([, to]) => to!.toLowerCase()).sort())
            expect(got.map((r) => r.messageId).sort()).toEqual(
              deliveries.map((d) => messageIdOf(d.idempotencyKey)).sort()
            )
            const receipt = got.find((r) => r.raw.includes("Received: Printer"))!
            expect(receipt.raw).toContain("Printer &lt;on&gt; fire") // escaped in the HTML part
            expect(receipt.raw).toContain("Smoke &amp; sparks")
            expect(receipt.to).toEqual([customer.email!.toLowerCase()])

            // Committing the same intent again (another processor name, as a replay would) adds no email delivery.
            const before = (yield* deliveriesOf(w)).length
            const store = yield* EventStore
            yield* store.commit("replay", [plan(created, new Map())])
            expect((yield* deliveriesOf(w)).length).toBe(before)
          })),
        120_000
      )

      it.effect(
        "refusals, temporary errors, hangs and dropped connections: retried, then failed with the reason; the rest delivered",
        () =>
          scoped(
            Effect.gen(function*() {
              const w = yield* world
              const sink = yield* smtpSink
              const owners = {
                refuse: yield* addUser(w, "refuse"),
                busy: yield* addUser(w, "busy"),
                hang: yield* addUser(w, "hang"),
                drop: yield* addUser(w, "drop")
              }
              const fine = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (i) => addUser(w, `fine${i}`))
              const events = []
              for (const u of [...Object.values(owners), ...fine]) {
                const ticketId = yield* addTicket(w, u.id)
                events.push(makeEvent(
                  "ticket.created",
                  {
                    id: ticketId,
                    title: `t-${u.username}`,
                    description: "d",
                    status: "open",
                    priority: "low",
                    ownerId: u.id,
                    assigneeId: null,
                    createdAt: new Date().toISOString()
                  } as const
                ))
              }
              yield* commit(w, events)
              yield* dispatcher(sink, Duration.millis(800))
              yield* settled(w)
              const byRecipient = new Map((yield* deliveriesOf(w)).map((d) => [d.recipientId, d]))
              // Healthy recipients were not held back by the hung or dropped sessions.
              for (const u of fine) expect(byRecipient.get(u.id)).toMatchObject({ state: "delivered", attempts: 1 })
              expect(sink.received().map((r) => r.to[0]).sort()).toEqual(fine.map((u) => u.email!.toLowerCase()).sort())
              // 550: permanent, failed at the first try with the server's reason.
              expect(byRecipient.get(owners.refuse.id)).toMatchObject({ state: "failed", attempts: 1, lastStatus: 550 })
              expect(byRecipient.get(owners.refuse.id)!.lastError).toContain("No such mailbox")
              // Transient problems: every round (MAX_RETRIES + 1) with its quick retries, then failed with the reason.
              const tries = (retry.maxRetries + 1) * (retry.immediateRetries + 1)
              expect(byRecipient.get(owners.busy.id)).toMatchObject({
                state: "failed",
                attempts: tries,
                lastStatus: 451
              })
              expect(byRecipient.get(owners.busy.id)!.lastError).toContain("Try again later")
              expect(byRecipient.get(owners.hang.id)).toMatchObject({ state: "failed", attempts: tries })
              expect(byRecipient.get(owners.hang.id)!.lastError).toMatch(/timeout|timed out|ETIMEDOUT/i)
              expect(byRecipient.get(owners.drop.id)).toMatchObject({ state: "failed", attempts: tries })
              expect(byRecipient.get(owners.drop.id)!.lastError).toMatch(/ECONNECTION|closed|ECONNRESET|socket/i)
              expect(sink.tries(owners.busy.email!)).toBe(tries)
              // Every try is in the log, with its outcome.
              const sql = yield* SqlClient.SqlClient
              const log = yield* sql<{ outcome: string; n: number }>`
          SELECT a.outcome, count(*)::int AS n FROM delivery_attempt_log a JOIN deliveries d ON d.id = a.delivery_id
          WHERE d.recipient_id = ${owners.busy.id} GROUP BY a.outcome ORDER BY a.outcome`
              expect(log).toEqual([{ outcome: "failed", n: 1 }, { outcome: "retry", n: tries - 1 }])
              // The CLI lists the failed ones and retries one (dashboard and CLI share Repo.retry); with the server still
              // refusing, it fails again. A delivery that is not failed is not retried, and the exit code says so.
              const refused = byRecipient.get(owners.refuse.id)!
              const listed = yield* opsdesk(["deliveries", "list", "--state", "failed", "--json", "--limit", "1000"])
              expect(listed.code).toBe(0)
              const failedIds = (JSON.parse(listed.stdout) as { deliveries: Array<{ id: string }> }).deliveries.map((
                d
              ) => d.id)
              for (const u of Object.values(owners)) expect(failedIds).toContain(byRecipient.get(u.id)!.id)
              // The same id twice (once with leading zeros) is one delivery, retried once.
              const retried = yield* opsdesk(["deliveries", "retry", "--id", `00${refused.id}`, "--id", refused.id])
              expect(retried).toMatchObject({ code: 0 })
              expect(retried.stdout).toContain(`Retried 1 failed delivery(ies): ${refused.id}`)
              const fineId = byRecipient.get(fine[0]!.id)!.id
              const notFailed = yield* opsdesk(["deliveries", "retry", "--id", `0${fineId}`])
              expect(notFailed.code).toBe(1)
              expect(notFailed.stderr).toContain(`Not retried (no such delivery, or not failed): ${fineId}\n`)
              yield* waitUntil(
                "the retried delivery failed again",
                Effect.map(
                  deliveriesOf(w),
                  (ds) => ds.some((d) => d.id === refused.id && d.state === "failed" && d.attempts === 2)
                )
              )
              expect(sink.tries(owners.refuse.email!)).toBe(2)
            })
          ),
        300_000
      )

      it.effect("two dispatchers at once send nothing twice", () =>
        scoped(Effect.gen(function*() {
          const w = yield* world
          const sink = yield* smtpSink
          const owners = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) => addUser(w, `pair${i}`))
          const events = []
          for (const u of owners) {
            const ticketId = yield* addTicket(w, u.id)
            events.push(makeEvent(
              "ticket.created",
              {
                id: ticketId,
                title: "twice?",
                description: "d",
                status: "open",
                priority: "low",
                ownerId: u.id,
                assigneeId: null,
                createdAt: new Date().toISOString()
              } as const
            ))
          }
          // Both dispatchers are running before the rows exist, so both race for every one of them.
          yield* dispatcher(sink)
          yield* dispatcher(sink)
          yield* commit(w, events)
          yield* settled(w)
          yield* waitUntil("all 40 emails", Effect.sync(() => sink.received().length >= 40))
          const ids = sink.received().map((r) => r.messageId)
          expect(ids).toHaveLength(40)
          expect(new Set(ids).size).toBe(40)
          expect((yield* deliveriesOf(w)).every((d) => d.state === "delivered" && d.attempts === 1)).toBe(true)
        })), 120_000)

      it.effect(
        "retention keeps a notification while its delivery is pending, and takes its settled deliveries along",
        () =>
          scoped(Effect.gen(function*() {
            const w = yield* world
            const sql = yield* SqlClient.SqlClient
            const owner = yield* addUser(w, "keep")
            const ticketId = yield* addTicket(w, owner.id)
            const created = makeEvent(
              "ticket.created",
              {
                id: ticketId,
                title: "kept",
                description: "d",
                status: "open",
                priority: "low",
                ownerId: owner.id,
                assigneeId: null,
                createdAt: new Date().toISOString()
              } as const
            )
            // No dispatcher runs: the email stays pending. A cutoff in the future makes every notification "expired"
            // (this database is this suite's alone, and its other tests remove their rows).
            yield* commit(w, [created])
            const later = new Date(Date.now() + 60_000)
            yield* deleteExpiredNotifications(later, 1000)
            const [pending] = yield* deliveriesOf(w)
            expect(pending).toMatchObject({ state: "pending" })
            expect(yield* notificationsOf(w)).toHaveLength(1)
            yield* sql`INSERT INTO delivery_attempt_log (delivery_id, outcome, duration_ms)
            VALUES (${pending!.id}::bigint, 'delivered', 1)`
            yield* sql`UPDATE deliveries SET state = 'delivered' WHERE id = ${pending!.id}::bigint`
            yield* deleteExpiredNotifications(later, 1000)
            expect(yield* notificationsOf(w)).toEqual([])
            expect(yield* deliveriesOf(w)).toEqual([])
            const [log] = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM delivery_attempt_log WHERE delivery_id = ${pending!.id}::bigint`
            expect(log!.n).toBe(0)
          })),
        120_000
      )
    }
  }
)
