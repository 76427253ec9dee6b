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
import { type Context, Effect, ParseResult, Schema } from "effect"
import { Authentication } from "../Auth/Api.js"
import { Api } from "../Http/Api.js"
import { CreateTicketRequest, ListTicketsParams } from "./Domain.js"
import { ticketResponses } from "./Http.js"
import { Tickets } from "./Tickets.js"

export const makeHotRoutes = Effect.gen(function*() {
  const tickets = yield* Tickets
  const authentication = yield* Authentication
  const encodeErrors = yield* HttpApiBuilder.buildMiddleware(Api)
  const respond = ticketResponses(tickets)
  const { createTicket, listTickets } = Api.groups.tickets.endpoints

  // HttpApi's security middleware in two steps: read the bearer token, check it.
  const authenticate = Effect.flatMap(HttpApiBuilder.securityDecode(HttpApiSecurity.bearer), authentication.bearer)
  const decodeCreate = Schema.decodeUnknown(CreateTicketRequest)
  const decodeList = Schema.decodeUnknown(ListTicketsParams)

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

  /** Serves the two routes; anything else goes on to `api`. */
  return (api: HttpApp.Default): HttpApp.Default => Effect.catchTag(app, "RouteNotFound", () => api)
})
