/**
 * Notification receivers for the chaos run (issue 13): a real SMTP server (the
 * `smtp-server` package) and an HTTP webhook receiver on loopback that, at
 * random per request, refuse for good, fail for now, hang (never answer: the
 * sender's timeout ends it), or drop the connection mid-request, and
 * otherwise accept. Each counts what it accepted by idempotency key (the
 * email's `Message-ID: <key@opsdesk>`, the webhook's `webhook-id`) with the
 * time and the try's number (`X-OpsDesk-Attempt`) of each acceptance, so the
 * harness can tell a delivery seen twice, when, and which tries sent it. The webhook receiver verifies every request's Standard Webhooks
 * signature (the `standardwebhooks` package) as an integrator's code would.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { SMTPServer } from "smtp-server"
import { Webhook } from "standardwebhooks"
import { ATTEMPT_HEADER } from "../../src/Notifications/Channel.js"

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

/** One acceptance: when (epoch ms), and the number of the try that carried it (null: the header was missing). */
export interface Receipt {
  readonly at: number
  readonly attempt: number | null
}

export interface Tally {
  /** Per idempotency key, its acceptances in order. */
  readonly accepted: Map<string, Array<Receipt>>
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

const attemptOf = (raw: string | undefined) => {
  const n = Number(raw)
  return raw !== undefined && Number.isInteger(n) && n >= 1 ? n : null
}

const accept = (tally: Tally, key: string, attempt: string | undefined) => {
  tally.accepted.set(key, [...(tally.accepted.get(key) ?? []), { at: Date.now(), attempt: attemptOf(attempt) }])
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

/** Keys accepted more than once, with their acceptances. */
export const seenTwice = (tally: Tally) => [...tally.accepted.entries()].filter(([, times]) => times.length > 1)

/** A try in the delivery attempt log, by idempotency key. */
export interface LoggedTry {
  readonly key: string
  readonly attempt: number | null
  readonly outcome: string
  /** The receiver's answer; null: none came (a timeout, a cut connection). */
  readonly status: number | null
}

/** A window in which a sender could have died between a send and its record: its process stopped, or its database. */
export interface CrashWindow {
  readonly name: string
  readonly start: number
  readonly end: number
}

/**
 * Why each key was received more than once. Every receipt but the one the log
 * calls delivered needs a cause:
 * - a late answer: its try is logged as given up with no answer from the
 *   receiver, so the receiver may have taken it while the sender gave up;
 * - a crash between send and record: the sender or its database stopped
 *   between this receipt and the next, so the try was never recorded and was
 *   sent again.
 * Anything else (a try the log says the receiver refused, a send after the
 * delivered one, one try taken twice with no crash) is unexplained.
 */
export const explainDoubles = (
  twice: ReadonlyArray<readonly [string, ReadonlyArray<Receipt>]>,
  logged: ReadonlyArray<LoggedTry>,
  crashes: ReadonlyArray<CrashWindow>
): { readonly byCause: Map<string, number>; readonly unexplained: ReadonlyArray<string> } => {
  const byCause = new Map<string, number>()
  const unexplained: Array<string> = []
  const triesByKey = new Map<string, Array<LoggedTry>>()
  for (const l of logged) {
    const tries = triesByKey.get(l.key)
    if (tries === undefined) triesByKey.set(l.key, [l])
    else tries.push(l)
  }
  for (const [key, receipts] of twice) {
    const tries = triesByKey.get(key) ?? []
    const deliveredAttempt = tries.find((t) => t.outcome === "delivered")?.attempt ?? null
    // The receipt the log knows of: the last one carrying the delivered try's number.
    const legit = deliveredAttempt === null ? -1 : receipts.map((r) => r.attempt).lastIndexOf(deliveredAttempt)
    receipts.forEach((receipt, i) => {
      if (i === legit) return
      const next = receipts[i + 1]
      const repeated = receipts.slice(0, i).some((r) => r.attempt === receipt.attempt)
      const late = !repeated && receipt.attempt !== null &&
        tries.some((t) => t.attempt === receipt.attempt && t.outcome !== "delivered" && t.status === null)
      const crash = next === undefined ? undefined : crashes.find((c) => c.start <= next.at && c.end >= receipt.at)
      const cause = late ? "a late answer (the sender gave up waiting)" : crash?.name
      if (cause !== undefined) {
        byCause.set(cause, (byCause.get(cause) ?? 0) + 1)
        return
      }
      const log = tries.map((t) => `${t.attempt ?? "?"}:${t.outcome}${t.status === null ? "" : `/${t.status}`}`)
      unexplained.push(`${key.slice(0, 12)}… try ${receipt.attempt ?? "?"} (log ${log.join(" ") || "empty"})`)
    })
  }
  return { byCause, unexplained }
}

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
            accept(tally, id, String(req.headers[ATTEMPT_HEADER.toLowerCase()] ?? ""))
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

/** A header's value in a raw message (unfolded), or undefined. */
const headerOf = (raw: string, name: string) => {
  const match = new RegExp(`^${name}:[ \\t]*(.*)$`, "im").exec(raw)
  return match ? match[1]!.trim() : undefined
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
          const raw = Buffer.concat(chunks).toString("utf8")
          accept(tally, keyOfMessageId(raw), headerOf(raw, ATTEMPT_HEADER))
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
