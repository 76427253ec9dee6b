/**
 * A raw HTTP/1.1 client over node:http for fuzzing and security tests: any
 * method, path bytes, headers and body (string or bytes, sized or chunked),
 * with nothing normalized on the way. Also finds the port of the server under
 * test (NodeHttpServer.layerTest listens on a random one).
 */
import { HttpServer } from "@effect/platform"
import { Effect } from "effect"
import { Agent, request } from "node:http"

export interface RawRequest {
  readonly method: string
  readonly path: string
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: string | Uint8Array | undefined
  /** Sends the body in pieces without Content-Length (Transfer-Encoding: chunked). */
  readonly chunked?: boolean | undefined
}

export interface RawReply {
  readonly status: number
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly text: string
  /** The parsed body; undefined when it is not JSON. */
  readonly json: unknown
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 })

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** The test server's port. */
export const serverPort = Effect.map(
  HttpServer.HttpServer,
  (server) => server.address._tag === "TcpAddress" ? server.address.port : 0
)

/** Sends one request; dies only if no answer comes back at all (reset, timeout). */
export const rawRequest = (port: number, req: RawRequest) =>
  Effect.async<RawReply>((resume) => {
    const body = req.body === undefined
      ? undefined
      : typeof req.body === "string"
      ? Buffer.from(req.body, "utf8")
      : Buffer.from(req.body)
    const headers: Record<string, string> = { ...req.headers }
    if (body !== undefined && !req.chunked && !Object.keys(headers).some((h) => h.toLowerCase() === "content-length")) {
      headers["content-length"] = String(body.length)
    }
    const out = request({
      host: "127.0.0.1",
      port,
      method: req.method,
      path: req.path,
      headers,
      agent,
      timeout: 20_000
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, text, json: parse(text) }))
      })
      res.on("error", (e) => resume(Effect.die(e)))
    })
    out.on("timeout", () => out.destroy(new Error(`no answer to ${req.method} ${req.path} within 20 s`)))
    out.on("error", (e) => resume(Effect.die(new Error(`${req.method} ${req.path.slice(0, 200)}: ${e.message}`))))
    if (body !== undefined && req.chunked) {
      for (let i = 0; i < body.length; i += 16 * 1024) out.write(body.subarray(i, i + 16 * 1024))
    } else if (body !== undefined) {
      out.write(body)
    }
    out.end()
  })
