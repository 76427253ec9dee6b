/**
 * A fast path for the API's two busiest endpoints, `POST /v1/tickets` and
 * `GET /v1/tickets`, in front of HttpApi's router.
 *
 * Why: a cached listing costs the server well under 0.1 ms of its own work
 * (a Redis round trip and a write of stored bytes); HttpApi's generic
 * per-request machinery (its router, the middleware map applied around each
 * handler, the context merge of every handler, the success-encoding check)
 * costs about as much again. Here the same steps run as plain Effects on a
 * two-route `HttpRouter`.
 *
 * What stays identical (test/api runs against both paths unchanged):
 * - routing: the same router implementation, on the paths and methods of the
 *   HttpApi definition (which keeps documenting both endpoints in
 *   /openapi.json); any other request falls through to HttpApi;
 * - the order of checks: the bearer token first (the same `Authentication`
 *   middleware, fed by the same `securityDecode`), then the body or query
 *   decoded with the endpoint's own Schema, a failure being the same
 *   `HttpApiDecodeError`;
 * - errors: encoded by HttpApi's own error encoder for this API (same bodies
 *   and statuses); the request guards (415, 413, 400, 503, 500) wrap this
 *   path as they wrap HttpApi (see Http/Server.ts);
 * - answers: the same functions build them (`ticketResponses`).
 *
 * In front of those two routes, the cached-listing shortcut: a GET of the
 * listing with a token that already passed verification (Tokens' LRU), a
 * plain query (letters, digits, `_`, `-`, `.`; each parameter once; no
 * cursor) that decodes, goes straight to `Tickets.listJson`, which answers
 * a cache hit with the stored bytes. That is most of the API's traffic, and
 * it skips the router, the error encoder and the full token check, which
 * together cost more than the rest of a cache hit. Any other request, and
 * any request that does not meet every condition, takes the full route; so
 * every error is produced there, exactly as before.
 */
import {
  HttpApiBuilder,
  HttpApiError,
  HttpApiSecurity,
  type HttpApp,
  HttpRouter,
  HttpServerRequest,
  type HttpServerResponse
} from "@effect/platform"
import { type Context, Effect, Either, ParseResult, Runtime, Schema } from "effect"
import { Authentication } from "../Auth/Api.js"
import { Tokens } from "../Auth/Tokens.js"
import { Api } from "../App/Api.js"
import type { Shortcut } from "../Http/NodeShortcut.js"
import { recordRequest } from "../App/RequestMetrics.js"
import { CreateTicketRequest, ListTicketsParams } from "./Domain.js"
import { ticketResponses } from "./Http.js"
import { Tickets } from "./Tickets.js"

const BEARER = /^bearer /i
/** What HttpApi's bearer decoding strips: "Bearer ". */
const BEARER_PREFIX_LENGTH = 7
const PLAIN_QUERY = /^[A-Za-z]+=[\w.-]*(?:&[A-Za-z]+=[\w.-]*)*$/
const SHORTCUT_PARAMS = new Set(["status", "assigneeId", "priority", "limit"])

/** `a=1&b=2` as a record when it is plain (see above) and names only shortcut parameters, each once. */
const plainParams = (query: string): Record<string, string> | undefined => {
  if (query === "") return {}
  if (!PLAIN_QUERY.test(query)) return undefined
  const params: Record<string, string> = {}
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=")
    const key = pair.slice(0, eq)
    if (!SHORTCUT_PARAMS.has(key) || key in params) return undefined
    params[key] = pair.slice(eq + 1)
  }
  return params
}

export const makeHotRoutes = Effect.gen(function*() {
  const tickets = yield* Tickets
  const tokens = yield* Tokens
  const authentication = yield* Authentication
  const encodeErrors = yield* HttpApiBuilder.buildMiddleware(Api)
  const respond = ticketResponses(tickets)
  const { createTicket, listTickets } = Api.groups.tickets.endpoints

  // HttpApi's security middleware in two steps: read the bearer token, check it.
  const authenticate = Effect.flatMap(HttpApiBuilder.securityDecode(HttpApiSecurity.bearer), authentication.bearer)
  const decodeCreate = Schema.decodeUnknown(CreateTicketRequest)
  const decodeList = Schema.decodeUnknown(ListTicketsParams)
  const decodeListNow = Schema.decodeUnknownEither(ListTicketsParams)

  const create = Effect.gen(function*() {
    const actor = yield* authenticate
    const request = yield* HttpServerRequest.HttpServerRequest
    // Like HttpApi: a body that is not JSON is a defect here, answered 400 by the guard.
    const payload = yield* Effect.flatMap(Effect.orDie(request.json), decodeCreate)
    return yield* respond.create(actor, payload)
  })

  const list = Effect.gen(function*() {
    const actor = yield* authenticate
    // Every parameter is a single string, so HttpApi's array normalization changes nothing.
    const urlParams = yield* Effect.flatMap(HttpServerRequest.ParsedSearchParams, decodeList)
    return yield* respond.list(actor, urlParams)
  })

  /** Typed failures become the responses HttpApi would send for them. */
  const answered = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>) =>
    Effect.contextWithEffect((context: Context.Context<R>) =>
      encodeErrors(
        handler.pipe(
          Effect.catchIf(ParseResult.isParseError, HttpApiError.HttpApiDecodeError.refailParseError),
          Effect.provide(context)
        )
      ).pipe(Effect.orDie)
    )

  const app = yield* HttpRouter.toHttpApp(HttpRouter.empty.pipe(
    HttpRouter.post(createTicket.path, answered(create)),
    HttpRouter.get(listTickets.path, answered(list))
  ))

  /** The full route of the two endpoints; anything else goes on to `api`. */
  const routed = (api: HttpApp.Default): HttpApp.Default => Effect.catchTag(app, "RouteNotFound", () => api)

  /** Who asks for which listing, when the request qualifies for the shortcut (see above). */
  const shortcutListing = (method: string, url: string, authorization: string | undefined) => {
    if (method !== "GET" || !url.startsWith(listTickets.path)) return undefined
    const rest = url.slice(listTickets.path.length)
    if (rest !== "" && rest[0] !== "?") return undefined
    if (authorization === undefined || !BEARER.test(authorization)) return undefined
    const actor = tokens.remembered(authorization.slice(BEARER_PREFIX_LENGTH).trim())
    if (actor === undefined) return undefined
    const params = plainParams(rest.slice(1))
    if (params === undefined) return undefined
    const urlParams = decodeListNow(params)
    if (Either.isLeft(urlParams)) return undefined
    return { actor, params: urlParams.right }
  }

  /** The cached-listing shortcut's answer, or `undefined` when the request must take the full route. */
  const listingShortcut = (request: HttpServerRequest.HttpServerRequest, fullRoute: HttpApp.Default) => {
    const listing = shortcutListing(request.method, request.url, request.headers.authorization)
    // Without a cursor the listing cannot fail; should it ever, the full route answers.
    return listing && Effect.catchAll(respond.list(listing.actor, listing.params), () => fullRoute)
  }

  /**
   * The same shortcut one step earlier, in node:http (Http/NodeShortcut.ts), for a plain GET
   * (a Host header, no body): what the request guards check of a GET holds. Any failure hands
   * the request on to the server, which answers it in full.
   */
  const runListing = Runtime.runPromise(yield* Effect.runtime<never>())
  const nodeShortcut: Shortcut = (request) => {
    const length = request.headers["content-length"]
    if (request.headers.host === undefined || (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined) {
      return undefined
    }
    const listing = shortcutListing(request.method ?? "", request.url ?? "", request.headers.authorization)
    if (listing === undefined) return undefined
    const started = performance.now()
    return runListing(tickets.listJson(listing.actor, listing.params)).then((body) => {
      recordRequest("GET", listTickets.path, 200, started)
      return body
    })
  }

  const routes = (api: HttpApp.Default): HttpApp.Default => {
    const fullRoute = routed(api)
    return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => listingShortcut(request, fullRoute) ?? fullRoute)
  }
  return { routes, nodeShortcut }
})
