/**
 * A webhook receiver on loopback for the tests: it records every request
 * (headers and raw body) and answers as the test tells it, per request:
 * 200, any status, a redirect, or never (a hung connection, closed when the
 * receiver stops). Signatures are checked by the tests with the
 * `standardwebhooks` package, as a receiver's own code would.
 */
import { Effect } from "effect"
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { Webhook } from "standardwebhooks"

export interface Received {
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly remoteAddress: string | undefined
}

export type Answer =
  | { readonly _tag: "Status"; readonly status: number; readonly body?: string }
  | { readonly _tag: "Redirect"; readonly status: number; readonly location: string }
  | { readonly _tag: "Hang" }

export const ok: Answer = { _tag: "Status", status: 200 }

export interface Receiver {
  readonly port: number
  readonly url: (path?: string) => string
  readonly received: ReadonlyArray<Received>
  /** How the next requests are answered, in order; once used up, `fallback`. */
  readonly script: (answers: ReadonlyArray<Answer>) => void
  readonly setFallback: (answer: Answer) => void
}

/** A started receiver, stopped (hung connections cut) when the scope closes. */
export const withReceiver = Effect.acquireRelease(
  Effect.async<{ receiver: Receiver; close: () => Promise<void> }>((resume) => {
    const received: Array<Received> = []
    const queue: Array<Answer> = []
    let fallback: Answer = ok
    const sockets = new Set<Socket>()
    const answer = (res: ServerResponse, a: Answer) => {
      if (a._tag === "Hang") return
      if (a._tag === "Redirect") {
        res.writeHead(a.status, { location: a.location }).end()
        return
      }
      res.writeHead(a.status, { "content-type": "text/plain" }).end(a.body ?? "")
    }
    const server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        received.push({
          path: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          remoteAddress: req.socket.remoteAddress
        })
        answer(res, queue.shift() ?? fallback)
      })
    })
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        receiver: {
          port,
          url: (path = "/hook") => `http://127.0.0.1:${port}${path}`,
          received,
          script: (answers) => {
            queue.length = 0
            for (const a of answers) queue.push(a)
          },
          setFallback: (a) => {
            fallback = a
          }
        },
        close: () =>
          new Promise<void>((resolve) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => resolve())
          })
      }))
    })
  }),
  ({ close }) => Effect.promise(close)
).pipe(Effect.map(({ receiver }) => receiver))

/** Verifies a received request with `secret` as a Standard Webhooks receiver would: the parsed body, or throws. */
export const verify = (secret: string, request: Received): unknown =>
  new Webhook(secret).verify(request.body, {
    "webhook-id": String(request.headers["webhook-id"]),
    "webhook-timestamp": String(request.headers["webhook-timestamp"]),
    "webhook-signature": String(request.headers["webhook-signature"])
  })

export const verifies = (secret: string, request: Received): boolean => {
  try {
    verify(secret, request)
    return true
  } catch {
    return false
  }
}
