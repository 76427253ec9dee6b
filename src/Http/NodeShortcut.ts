/**
 * A hook for answering a request in node:http itself, before
 * @effect/platform's server wraps it in a request, a fiber and the middleware
 * chain. Only for answers that need none of that: the cached ticket listing
 * (Tickets/HotRoutes.ts registers it), whose own work is a Redis round trip
 * and a write of stored bytes, while the server's per-request machinery costs
 * about twice as much again.
 *
 * A shortcut looks at the request synchronously and either declines
 * (`undefined`: the request goes on to the server at once) or returns a
 * promise of the body. `undefined` from the promise, or a rejection, hands
 * the request on to the server, which then answers it in full (and produces
 * every error). Until a shortcut is registered, and from shutdown on, every
 * request goes to the server.
 */
import { Context } from "effect"
import type { IncomingMessage, Server, ServerResponse } from "node:http"

export type Shortcut = (request: IncomingMessage) => Promise<Uint8Array | undefined> | undefined

export class NodeShortcut extends Context.Tag("OpsDesk/Http/NodeShortcut")<NodeShortcut, {
  readonly register: (shortcut: Shortcut | undefined) => void
  readonly current: () => Shortcut | undefined
}>() {}

/** Routes the server's `request` events through the registered shortcut first. */
export const installShortcut = (server: Server): NodeShortcut["Type"] => {
  let current: Shortcut | undefined
  const original = server.emit.bind(server) as (event: string | symbol, ...args: Array<unknown>) => boolean
  const emit = (event: string | symbol, ...args: Array<unknown>) => original(event, ...args)
  const intercept = (event: string | symbol, ...args: Array<unknown>): boolean => {
    if (event !== "request" || current === undefined) return emit(event, ...args)
    const [request, response] = args as [IncomingMessage, ServerResponse]
    const answer = current(request)
    if (answer === undefined) return emit(event, ...args)
    const handOn = () => void emit(event, request, response)
    answer.then((body) => {
      if (body === undefined || response.headersSent || response.destroyed) return handOn()
      response.writeHead(200, { "content-type": "application/json", "content-length": body.byteLength }).end(body)
    }, handOn)
    return true
  }
  server.emit = intercept as Server["emit"]
  return { register: (shortcut) => (current = shortcut), current: () => current }
}
