/**
 * Notification receivers for the chaos run (issue 13): a real SMTP server (the
 * `smtp-server` package) and an HTTP webhook receiver on loopback that, at
 * random per request, refuse for good, fail for now, hang (never answer: the
 * sender's timeout ends it), or drop the connection mid-request, and
 * otherwise accept. Each counts what it accepted by idempotency key (the
 * email's `Message-ID: <key@opsdesk>`, the webhook's `webhook-id`) with the
 * time of each acceptance, so the harness can tell a delivery seen twice and
 * when. The webhook receiver verifies every request's Standard Webhooks
 * signature (the `standardwebhooks` package) as an integrator's code would.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { SMTPServer } from "smtp-server"
import { Webhook } from "standardwebhooks"

/** Probabilities per request (the rest is accepted). */
export interface FaultRates {
  /** Refused for good: SMTP 550 to RCPT TO; a webhook redirect (301), which the sender never follows. */
  readonly permanent: number
  /** Refused for now: SMTP 451; webhook 500 or 503. */
  readonly fail: number
  /** Never answered: SMTP after the message's data, webhook after the body. */
  readonly hang: number
  /** The connection dropped: SMTP in the middle of DATA, webhook after the body, no answer. */
  readonly drop: number
}

export type Outcome = "accepted" | "permanent" | "failed" | "hung" | "dropped"

export interface Tally {
  /** Per idempotency key, the times (epoch ms) it was accepted. */
  readonly accepted: Map<string, Array<number>>
  readonly outcomes: Record<Outcome, number>
  /** Webhooks whose signature did not verify (answered 401, never accepted). */
  badSignatures: number
}

export interface ChaosReceiver {
  readonly url: string
  readonly tally: Tally
  readonly close: () => Promise<void>
}

const newTally = (): Tally => ({
  accepted: new Map(),
  outcomes: { accepted: 0, permanent: 0, failed: 0, hung: 0, dropped: 0 },
  badSignatures: 0
})

const accept = (tally: Tally, key: string) => {
  tally.accepted.set(key, [...(tally.accepted.get(key) ?? []), Date.now()])
}

/** One roll of the dice for a request. */
const roll = (rates: FaultRates): Outcome => {
  const odds: ReadonlyArray<readonly [Outcome, number]> = [
    ["permanent", rates.permanent],
    ["failed", rates.fail],
    ["hung", rates.hang],
    ["dropped", rates.drop]
  ]
  let r = Math.random()
  for (const [outcome, p] of odds) {
    if (r < p) return outcome
    r -= p
  }
  return "accepted"
}

/** Keys accepted more than once, with their acceptance times. */
export const seenTwice = (tally: Tally) => [...tally.accepted.entries()].filter(([, times]) => times.length > 1)

/** A webhook receiver; `secret` is set once the subscription exists (its secret is shown once, at creation). */
export const startWebhookReceiver = (rates: FaultRates) =>
  new Promise<ChaosReceiver & { readonly setSecret: (secret: string) => void }>((resolve, reject) => {
    const tally = newTally()
    const sockets = new Set<Socket>()
    let verifier: Webhook | undefined
    const server: Server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        const id = String(req.headers["webhook-id"] ?? "")
        try {
          if (verifier === undefined) throw new Error("no secret yet")
          verifier.verify(body, {
            "webhook-id": id,
            "webhook-timestamp": String(req.headers["webhook-timestamp"] ?? ""),
            "webhook-signature": String(req.headers["webhook-signature"] ?? "")
          })
        } catch {
          tally.badSignatures++
          res.writeHead(401).end("bad signature")
          return
        }
        const outcome = roll(rates)
        tally.outcomes[outcome]++
        switch (outcome) {
          case "accepted":
            accept(tally, id)
            res.writeHead(200, { "content-type": "text/plain" }).end("ok")
            return
          case "permanent":
            res.writeHead(301, { location: "http://127.0.0.1:9/moved" }).end()
            return
          case "failed":
            res.writeHead(Math.random() < 0.5 ? 500 : 503, { "content-type": "text/plain" }).end("try later")
            return
          case "hung":
            return // the sender's timeout ends it; close() cuts what is left
          case "dropped":
            req.socket.destroy()
            return
        }
      })
    })
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}/hooks/opsdesk`,
        tally,
        setSecret: (secret) => (verifier = new Webhook(secret)),
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })

const smtpError = (message: string, responseCode: number) => Object.assign(new Error(message), { responseCode })

/** `<key@opsdesk>` → key (src/Notifications/Email.ts, messageIdOf). */
const keyOfMessageId = (raw: string) => {
  // A long header is folded onto the next line (`Message-ID:\r\n <…>`).
  const match = /^Message-ID:\s*<([^@>\s]+)@[^>]*>/im.exec(raw)
  return match ? match[1]! : ""
}

/** An SMTP server (no auth, no TLS); the dice are rolled per message at RCPT TO. */
export const startSmtpReceiver = (rates: FaultRates) =>
  new Promise<ChaosReceiver>((resolve, reject) => {
    const tally = newTally()
    const planned = new Map<string, Outcome>()
    const server: SMTPServer = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      // A hung session ends when the sender gives up; this only bounds what a vanished sender leaves.
      socketTimeout: 30_000,
      onRcptTo(_address, session, callback) {
        const outcome = roll(rates)
        planned.set(session.id, outcome)
        if (outcome === "permanent") {
          tally.outcomes.permanent++
          return callback(smtpError("5.1.1 No such mailbox here", 550))
        }
        if (outcome === "failed") {
          tally.outcomes.failed++
          return callback(smtpError("4.3.2 Try again later", 451))
        }
        callback()
      },
      onData(stream, session, callback) {
        const outcome = planned.get(session.id) ?? "accepted"
        planned.delete(session.id)
        if (outcome === "dropped") {
          tally.outcomes.dropped++
          stream.once("data", () => {
            for (const connection of server.connections) {
              if (connection.session.id === session.id) connection._socket.destroy()
            }
          })
          stream.resume()
          return
        }
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () => {
          if (outcome === "hung") {
            tally.outcomes.hung++
            return // never answers the end of DATA
          }
          tally.outcomes.accepted++
          accept(tally, keyOfMessageId(Buffer.concat(chunks).toString("utf8")))
          callback()
        })
      }
    })
    server.on("error", () => undefined)
    server.server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.server.address() as AddressInfo
      resolve({
        url: `smtp://127.0.0.1:${port}`,
        tally,
        close: () =>
          new Promise<void>((done) => {
            for (const connection of server.connections) connection._socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
