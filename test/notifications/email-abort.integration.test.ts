/**
 * A send the email channel gives up on is cut, so it cannot land later and
 * make the retry a second copy (issue 13: a key seen twice only after a crash
 * between sending and recording). The SMTP server here answers every step a
 * little inside the per-step timeout, so only the bound on the whole exchange
 * (3 × SMTP_TIMEOUT) ends the try; the server counts a message only if its
 * 250 can still reach the sender.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { AddressInfo } from "node:net"
import { SMTPServer } from "smtp-server"
import { ATTEMPT_HEADER, type DeliveryJob } from "../../src/Notifications/Channel.js"
import { makeSmtpSender } from "../../src/Notifications/Email.js"

const STEP_TIMEOUT_MS = 2000
/** Each reply's delay: under the step timeout, but four of them exceed the whole exchange's bound (3 × 2 s). */
const SLOW_MS = 1600

interface SlowServer {
  readonly url: string
  /** Raw messages the server answered 250 to over a connection still open. */
  readonly accepted: () => ReadonlyArray<string>
  readonly setDelay: (ms: number) => void
}

const slowServer = Effect.acquireRelease(
  Effect.async<{ server: SMTPServer; handle: SlowServer }>((resume) => {
    const accepted: Array<string> = []
    let delay = SLOW_MS
    const later = (f: () => void) => (delay === 0 ? f() : void setTimeout(f, delay))
    const server: SMTPServer = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      socketTimeout: 60_000,
      onConnect: (_session, callback) => later(() => callback()),
      onMailFrom: (_address, _session, callback) => later(() => callback()),
      onRcptTo: (_address, _session, callback) => later(() => callback()),
      onData(stream, session, callback) {
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () =>
          later(() => {
            const open = [...server.connections].some((c) => c.session.id === session.id && !c._socket.destroyed)
            if (open) accepted.push(Buffer.concat(chunks).toString("utf8"))
            callback()
          }))
      }
    })
    server.on("error", () => undefined)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.server.address() as AddressInfo
      resume(Effect.succeed({
        server,
        handle: {
          url: `smtp://127.0.0.1:${port}`,
          accepted: () => [...accepted],
          setDelay: (ms) => void (delay = ms)
        }
      }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      for (const connection of server.connections) connection._socket.destroy()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ handle }) => handle))

const job = (attempt: number): DeliveryJob => ({
  id: "1",
  idempotencyKey: "abort-test-key",
  channel: "email",
  eventId: "00000000-0000-4000-8000-000000000001",
  eventType: "ticket.created",
  recipientId: null,
  subscriptionId: null,
  payload: { to: "someone@example.test", subject: "Hello", text: "Hello", html: "<p>Hello</p>" },
  attempt
})

it.scopedLive(
  "a send given up on is cut: the server never takes it afterwards, and the pool goes on",
  () =>
    Effect.gen(function*() {
      const smtp = yield* slowServer
      // One connection: a send left running would also hold the next one in the pool's queue.
      const sender = yield* makeSmtpSender({
        url: smtp.url,
        from: "OpsDesk <desk@test>",
        timeout: Duration.millis(STEP_TIMEOUT_MS),
        maxConnections: 1
      })

      const first = yield* sender.deliver(job(1))
      expect(first._tag).toBe("Retryable")
      // Long enough for every step the server still had to answer.
      yield* Effect.sleep(Duration.millis(SLOW_MS * 3))
      expect(smtp.accepted()).toEqual([])

      smtp.setDelay(0)
      const second = yield* sender.deliver(job(2))
      expect(second._tag).toBe("Delivered")
      const received = smtp.accepted()
      expect(received).toHaveLength(1)
      expect(received[0]).toMatch(new RegExp(`^${ATTEMPT_HEADER}: 2\\r?$`, "im"))
    }),
  { timeout: 30_000 }
)
