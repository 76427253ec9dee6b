/**
 * A real SMTP server (the `smtp-server` package) on loopback for a test's
 * scope, whose behaviour is chosen per recipient by the address's local part:
 *
 *   refuse…@   550 to RCPT TO (permanent)
 *   busy…@     451 to RCPT TO (temporary)
 *   hang…@     takes the message and never answers the end of DATA
 *   drop…@     drops the connection in the middle of DATA
 *   anything else is accepted and kept, with its Message-ID.
 */
import { Effect } from "effect"
import type { AddressInfo } from "node:net"
import { SMTPServer } from "smtp-server"

export interface Received {
  readonly to: ReadonlyArray<string>
  readonly messageId: string
  readonly subject: string
  readonly raw: string
}

export interface SmtpSink {
  readonly url: string
  /** Every message accepted, in order. */
  readonly received: () => ReadonlyArray<Received>
  /** RCPT TO commands seen per address (every try, accepted or not). */
  readonly tries: (address: string) => number
}

const header = (raw: string, name: string) => {
  const match = new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, "im").exec(raw)
  return match ? match[1]!.replace(/\r?\n[ \t]+/g, " ").trim() : ""
}

const smtpError = (message: string, responseCode: number) => Object.assign(new Error(message), { responseCode })

export const smtpSink = Effect.acquireRelease(
  Effect.async<{ sink: SmtpSink; server: SMTPServer }>((resume) => {
    const received: Array<Received> = []
    const tries = new Map<string, number>()
    const server: SMTPServer = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      // Hung sessions must not keep the server from closing at the end of the test.
      socketTimeout: 60_000,
      onRcptTo(address, _session, callback) {
        const to = address.address.toLowerCase()
        tries.set(to, (tries.get(to) ?? 0) + 1)
        if (to.startsWith("refuse")) return callback(smtpError("5.1.1 No such mailbox here", 550))
        if (to.startsWith("busy")) return callback(smtpError("4.3.2 Try again later", 451))
        callback()
      },
      onData(stream, session, callback) {
        const to = session.envelope.rcptTo.map((a) => a.address.toLowerCase())
        const chunks: Array<Buffer> = []
        if (to.some((a) => a.startsWith("drop"))) {
          stream.once("data", () => {
            for (const connection of server.connections) {
              if (connection.session.id === session.id) connection._socket.destroy()
            }
          })
          stream.resume()
          return
        }
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () => {
          if (to.some((a) => a.startsWith("hang"))) return // never answers
          const raw = Buffer.concat(chunks).toString("utf8")
          received.push({ to, messageId: header(raw, "Message-ID"), subject: header(raw, "Subject"), raw })
          callback()
        })
      }
    })
    server.on("error", () => {})
    server.listen(0, "127.0.0.1", () => {
      const port = (server.server.address() as AddressInfo).port
      resume(Effect.succeed({
        server,
        sink: {
          url: `smtp://127.0.0.1:${port}`,
          received: () => [...received],
          tries: (address) => tries.get(address.toLowerCase()) ?? 0
        }
      }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      for (const connection of server.connections) connection._socket.destroy()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ sink }) => sink))
