/**
 * The pure half of "who is told what" (src/Notifications/Recipients.ts), the
 * templates, the retry decision of the dispatcher and the SMTP error
 * classification. The database half (mentions, customers, deactivated users,
 * preferences) is tested against PostgreSQL in delivery.integration.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Duration, FastCheck as fc } from "effect"
import { DomainEvent, type EventName } from "../../src/Domain/Events.js"
import { decide } from "../../src/Notifications/Dispatcher.js"
import { classify } from "../../src/Notifications/Email.js"
import { audience, MAX_MENTIONS, mentionsIn } from "../../src/Notifications/Recipients.js"
import { escapeHtml, headerSafe, render } from "../../src/Notifications/Templates.js"
import { plan } from "../../src/Worker/Handlers.js"

const eventArb = Arbitrary.make(DomainEvent)
const watchersArb = (event: DomainEvent) =>
  fc.array(fc.oneof(fc.uuid(), fc.constant(actorOf(event))), { maxLength: 6 }).map((ids) =>
    new Map(event.event === "message.sent" ? [[event.payload.ticketId, ids]] : [])
  )

const actorOf = (e: DomainEvent): string => {
  switch (e.event) {
    case "ticket.created":
      return e.payload.ownerId
    case "ticket.updated":
      return e.payload.updatedBy
    case "ticket.status_changed":
      return e.payload.changedBy
    case "message.sent":
      return e.payload.authorId
  }
}

const eventWithWatchers = eventArb.chain((event) => watchersArb(event).map((watchers) => ({ event, watchers })))

describe("recipients policy", () => {
  it.prop(
    "never the actor, except the receipt of a new ticket; each recipient once",
    [eventWithWatchers],
    ([{ event, watchers }]) => {
      const who = audience(event, watchers)
      expect(who.actorId).toBe(actorOf(event))
      const ids = who.direct.map((a) => a.recipientId)
      expect(new Set(ids).size).toBe(ids.length)
      for (const a of who.direct) {
        if (a.recipientId === who.actorId) {
          expect(event.event).toBe("ticket.created")
          expect(a).toEqual({ recipientId: who.actorId, channels: ["email"], reason: "receipt" })
        } else {
          expect(a.reason).toBe("notice")
          expect([...a.channels].sort()).toEqual(["email", "in_app"])
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "ticket events tell the owner and the assignee; messages tell every watcher",
    [eventWithWatchers],
    ([{ event, watchers }]) => {
      const who = audience(event, watchers)
      const told = new Set(who.direct.map((a) => a.recipientId))
      const actor = actorOf(event)
      const expected = event.event === "message.sent"
        ? new Set((watchers.get(event.payload.ticketId) ?? []).filter((id) => id !== actor))
        : new Set([event.payload.ownerId, ...(event.payload.assigneeId === null ? [] : [event.payload.assigneeId])]
          .filter((id) => id !== actor || event.event === "ticket.created"))
      expect(told).toEqual(expected)
      if (event.event !== "message.sent") expect(who.mentions).toEqual([])
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "the plan writes what the audience says: one row per recipient and channel",
    [eventWithWatchers],
    ([{ event, watchers }]) => {
      const p = plan(event, watchers)
      const who = audience(event, watchers)
      expect(p.actorId).toBe(who.actorId)
      expect(p.notifications.map((n) => `${n.recipientId}:${n.channel}`)).toEqual(
        who.direct.flatMap((a) => a.channels.map((c) => `${a.recipientId}:${c}`))
      )
      for (const n of p.notifications) {
        expect(n.email === null).toBe(n.channel === "in_app")
        expect(n.body).not.toContain("\u0000")
      }
      expect(p.mentions.map((m) => m.username)).toEqual(who.mentions.flatMap((u) => [u, u]))
    },
    { fastCheck: { numRuns: 200 } }
  )

  describe("mentions", () => {
    it("finds @names, not email addresses, without repeats", () => {
      expect(mentionsIn("@alice and @bob.smith, cc @alice; mail carol@example.com or x@y")).toEqual([
        "alice",
        "bob.smith"
      ])
    })
    it("a name at the end of a sentence also yields it without the period", () => {
      expect(mentionsIn("Thanks @dave.")).toEqual(["dave.", "dave"])
      expect(mentionsIn("(@erin-)")).toEqual(["erin-", "erin"])
    })
    it("nothing in plain text, an email address or a lone @", () => {
      expect(mentionsIn("no mentions here, write to support@opsdesk.test @ noon")).toEqual([])
    })
    it("at most MAX_MENTIONS names", () => {
      const text = Array.from({ length: MAX_MENTIONS * 2 }, (_, i) => `@user${i}`).join(" ")
      expect(mentionsIn(text)).toHaveLength(MAX_MENTIONS)
    })
    it.prop("every name found is a valid username", [fc.string({ maxLength: 200 })], ([text]) => {
      for (const name of mentionsIn(text)) expect(name).toMatch(/^[A-Za-z0-9_.-]{1,64}$/)
    })
  })
})

describe("templates", () => {
  it.prop("user text is escaped in the HTML and flattened in the subject", [eventArb], ([event]) => {
    for (const reason of ["receipt", "notice"] as const) {
      const { email } = render(event, reason)
      expect(email.subject).not.toMatch(/[\r\n]/)
      const html = email.html.replace(/<\/?(!doctype html|html|body|p|hr|blockquote)[^>]*>/gi, "")
      expect(html).not.toMatch(/[<>]/)
    }
  }, { fastCheck: { numRuns: 300 } })

  it("a title with markup and line breaks", () => {
    const event = Arbitrary.make(DomainEvent).filter((e): e is Extract<DomainEvent, { event: "ticket.created" }> =>
      e.event === "ticket.created"
    )
    const e = fc.sample(event, { numRuns: 1, seed: 3 })[0]!
    const hostile = { ...e, payload: { ...e.payload, title: "<script>x</script>\r\nBcc: all@corp" } }
    const { email } = render(hostile, "receipt")
    expect(email.subject).toBe("[OpsDesk] Received: <script>x</script> Bcc: all@corp")
    expect(email.html).toContain(escapeHtml("<script>x</script>"))
    expect(email.html).not.toContain("<script>")
    expect(email.text).toContain("<script>x</script>")
    expect(headerSafe("a".repeat(300))).toHaveLength(150)
  })

  it("one template per event type", () => {
    const names: ReadonlyArray<EventName> = [
      "ticket.created",
      "ticket.updated",
      "ticket.status_changed",
      "message.sent"
    ]
    for (const name of names) {
      const e = fc.sample(eventArb.filter((x) => x.event === name), { numRuns: 1, seed: 5 })[0]!
      const { body, email } = render(e, "notice")
      expect(body.length).toBeGreaterThan(0)
      expect(email.subject).toMatch(/^\[OpsDesk\] /)
      expect(email.text).toContain("--")
    }
  })
})

describe("dispatcher decisions", () => {
  const retry = {
    maxRetries: 3,
    retryInitialDelay: Duration.seconds(1),
    retryMaxDelay: Duration.seconds(30),
    immediateRetries: 2,
    immediateRetryDelay: Duration.millis(50)
  }
  const context = (round: number, quickRetriesLeft: boolean) => ({
    round,
    quickRetriesLeft,
    retry,
    delays: [1000, 2000, 4000],
    leaseMs: 60_000,
    attempt: round + 4
  })

  it("delivered, permanent, quick retry, backoff, then failed", () => {
    expect(decide({ _tag: "Delivered", status: 250 }, context(1, true), 12).next).toEqual({ _tag: "Delivered" })
    expect(decide({ _tag: "Permanent", reason: "550 no", status: 550 }, context(1, true), 5)).toEqual({
      attempt: { attempt: 5, outcome: "failed", status: 550, error: "550 no", durationMs: 5 },
      next: { _tag: "Failed" }
    })
    expect(decide({ _tag: "Retryable", reason: "x" }, context(1, true), 1).next).toEqual({
      _tag: "RetryNow",
      leaseMs: 60_000
    })
    expect(decide({ _tag: "Retryable", reason: "x" }, context(1, false), 1).next).toEqual({
      _tag: "RetryLater",
      delayMs: 1000
    })
    expect(decide({ _tag: "Retryable", reason: "x" }, context(3, false), 1).next).toEqual({
      _tag: "RetryLater",
      delayMs: 4000
    })
    expect(decide({ _tag: "Retryable", reason: "x", status: 451 }, context(4, false), 1)).toEqual({
      attempt: { attempt: 8, outcome: "failed", status: 451, error: "x", durationMs: 1 },
      next: { _tag: "Failed" }
    })
  })
})

describe("SMTP error classification", () => {
  it("5xx is permanent, 4xx and transport errors are retried", () => {
    expect(classify({ code: "EENVELOPE", responseCode: 550, response: "550 5.1.1 No such user" })).toMatchObject({
      _tag: "Permanent",
      status: 550
    })
    expect(classify({ code: "EENVELOPE", responseCode: 451, response: "451 later" })).toMatchObject({
      _tag: "Retryable",
      status: 451
    })
    expect(classify({ code: "ECONNECTION", message: "Connection closed" })).toMatchObject({ _tag: "Retryable" })
    expect(classify({ code: "ETIMEDOUT", message: "Greeting never received" })).toMatchObject({
      _tag: "Retryable",
      reason: "ETIMEDOUT: Greeting never received"
    })
    expect(classify("weird")).toMatchObject({ _tag: "Retryable", reason: "weird" })
  })
})
