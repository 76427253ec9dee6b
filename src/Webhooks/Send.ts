/**
 * One POST to a checked webhook address, over node:http(s) directly: the
 * connection goes to the addresses the guard approved (`pinnedLookup`),
 * redirects are never followed (Node's client does not follow them; the
 * caller sees the 3xx), the whole exchange is bounded by one timeout, and
 * only the first bytes of an answer are read. Never fails: every problem is
 * a `SendResult`.
 */
import { Duration, Effect } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { describe } from "../Kit/Cause.js"
import { type CheckedUrl, pinnedLookup } from "./Ssrf.js"

export type SendResult =
  | {
    readonly _tag: "Answered"
    readonly status: number
    /** The `Location` of a redirect, if any. */
    readonly location: string | undefined
    /** The first bytes of the answer's body, as text. */
    readonly snippet: string
  }
  | { readonly _tag: "NoAnswer"; readonly reason: string; readonly timedOut: boolean }

/** How much of an answer's body is kept for the delivery log. */
const SNIPPET_BYTES = 512

export const USER_AGENT = "OpsDesk-Webhooks/1.0"

export const post = (
  target: CheckedUrl,
  headers: Readonly<Record<string, string>>,
  body: string,
  timeout: Duration.Duration
): Effect.Effect<SendResult> =>
  Effect.async<SendResult>((resume) => {
    const timeoutMs = Duration.toMillis(timeout)
    let settled = false
    const settle = (result: SendResult) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(Effect.succeed(result))
    }
    // Set once the status line is in: from then on the receiver has answered, whatever its body does.
    let answered: (() => SendResult) | undefined
    const client = target.url.protocol === "https:" ? https : http
    const request = client.request(target.url, {
      method: "POST",
      headers: {
        ...headers,
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
        "user-agent": USER_AGENT
      },
      lookup: pinnedLookup(target.addresses),
      // A connection of its own: a pooled socket could outlive the address check it was made under.
      agent: false
    }, (response) => {
      const chunks: Array<Buffer> = []
      let size = 0
      answered = (): SendResult => ({
        _tag: "Answered",
        status: response.statusCode ?? 0,
        location: response.headers.location,
        snippet: Buffer.concat(chunks).toString("utf8").slice(0, SNIPPET_BYTES)
      })
      response.on("data", (chunk: Buffer) => {
        if (size >= SNIPPET_BYTES) return
        chunks.push(chunk)
        size += chunk.length
        if (size >= SNIPPET_BYTES) {
          // Enough to tell what the receiver said; the rest is not worth the wait.
          settle(answered!())
          request.destroy()
        }
      })
      response.on("end", () => settle(answered!()))
      // A body that breaks off after the status does not undo the answer.
      response.on("error", () => settle(answered!()))
      response.on("close", () => settle(answered!()))
    })
    const timer = setTimeout(() => {
      settle(answered?.() ?? { _tag: "NoAnswer", reason: `no answer within ${timeoutMs} ms`, timedOut: true })
      request.destroy()
    }, timeoutMs)
    request.on("error", (error) => {
      const code = (error as NodeJS.ErrnoException).code
      settle({
        _tag: "NoAnswer",
        reason: code !== undefined && !describe(error).includes(code) ? `${code}: ${describe(error)}` : describe(error),
        timedOut: false
      })
    })
    request.end(body)
    return Effect.sync(() => {
      settled = true
      clearTimeout(timer)
      request.destroy()
    })
  })
