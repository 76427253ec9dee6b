/**
 * The API's one HTTP front cache, in front of the HttpApi app: the 200
 * answers of GET endpoints the contract marks `FrontCached` (Kit/Api.ts), kept
 * in Redis per bearer token and URL under the generation of the counter the
 * mark names, and sent again without running the app.
 *
 * - A request is answered here only when it is a plain GET (no body, no
 *   conditional or CORS headers) of a marked path with only the query
 *   parameters it declares, each once, and its token is one the
 *   Authentication middleware let in within its window (Auth/Admissions.ts):
 *   nobody gets in here who would not get in there, and a logout through this
 *   process ends it at once.
 * - The lookup reads the counter and the entry in one round trip
 *   (`Redis.lookupUnderGeneration`); a miss records the key under the generation it read, and the
 *   app's answer is stored under it (`storeAnswers`, a middleware of the app):
 *   an answer computed after the counter moved on is never read again.
 * - An answer sent here carries what the app's would: the request id, the
 *   request metrics and the access log line (RequestContext.ts,
 *   RequestMetrics.ts). With Redis away, or HTTP_FRONT_CACHE_TTL_S=0, or
 *   traces exported (every request then has its span), every request goes
 *   the whole way.
 *
 * Hand-written: HTTP caching libraries key on URLs and Cache-Control, not on
 * a token the API's own middleware vouched for.
 */
import { HttpApi, type HttpApp, HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, Layer, Option, Runtime, Schema, SchemaAST } from "effect"
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http"
import { Admissions } from "../Auth/Admissions.js"
import { Authentication } from "../Auth/Api.js"
import { FrontCacheTtl, HttpConventionsConfig } from "../Config.js"
import { FrontCached } from "../Kit/Api.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { Tracing } from "../Observability/Otel.js"
import { Redis } from "../Store/Redis.js"
import { Api } from "./Api.js"
import { REQUEST_ID_HEADER, requestIdOf } from "./RequestContext.js"
import { accessLine, accessLogged, recordRequest } from "./RequestMetrics.js"

/** A marked path: the Redis counter its answers live under, and the query parameters it declares. */
export interface FrontCachedRoute {
  readonly counter: string
  readonly params: ReadonlySet<string>
}

/** The names a struct of query parameters declares (none without one). */
const declaredParams = (schema: Option.Option<Schema.Schema<never, unknown>>, route: string): ReadonlySet<string> => {
  if (Option.isNone(schema)) return new Set()
  const ast = Schema.encodedSchema(schema.value).ast
  if (!SchemaAST.isTypeLiteral(ast) || ast.indexSignatures.length > 0) {
    throw new Error(`FrontCached on ${route}: its query parameters must be a struct of named fields`)
  }
  return new Set(ast.propertySignatures.map((p) => String(p.name)))
}

/** The marked GET paths. */
export const frontCachedPaths: ReadonlyMap<string, FrontCachedRoute> = (() => {
  const paths = new Map<string, FrontCachedRoute>()
  HttpApi.reflect(Api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, mergedAnnotations, middleware }) => {
      const counter = Context.getOption(mergedAnnotations, FrontCached)
      if (Option.isNone(counter)) return
      const path = endpoint.path.replace(/\/+$/, "")
      // Only what this cache can key safely: a fixed path, a GET, and a caller the middleware vouched for.
      if (
        endpoint.method !== "GET" || path.includes(":") || ![...middleware].some((m) => m.key === Authentication.key)
      ) {
        throw new Error(`FrontCached on ${endpoint.method} ${endpoint.path}: only GETs of fixed, authenticated paths`)
      }
      paths.set(path, { counter: counter.value, params: declaredParams(endpoint.urlParamsSchema, endpoint.path) })
    }
  })
  return paths
})()

const BEARER = /^bearer /i
/** Longer URLs go the whole way (they are not worth a key of that size). */
const MAX_URL = 512
const PREFIX = "front:"
const CONTENT_TYPE = "application/json"
/** The headers an answer of bytes carries anyway; one with any other is not stored. */
const BODY_HEADERS = new Set(["content-type", "content-length"])

/** The keys a request is looked up under: the counter, and the entry's key around the generation. */
interface Lookup {
  readonly counter: string
  readonly before: string
  readonly after: string
  readonly route: string
}

/**
 * The query as the key names it: only declared parameters, each once, sorted,
 * percent-encoding normalised; `undefined` for any other (the app answers it,
 * and it is not stored): spellings of one query share one entry, and junk
 * parameters cannot multiply the entries of one token.
 */
const canonicalQuery = (search: string, declared: ReadonlySet<string>): string | undefined => {
  const params = new URLSearchParams(search)
  const seen = new Set<string>()
  for (const name of params.keys()) {
    if (!declared.has(name) || seen.has(name)) return undefined
    seen.add(name)
  }
  params.sort()
  return params.toString()
}

/** Whether a client asks for something this cache does not do: a body, a revalidation, a cross-origin answer. */
const plainGet = (request: IncomingMessage, cors: boolean) => {
  const h = request.headers
  return request.method === "GET" && h["content-length"] === undefined && h["transfer-encoding"] === undefined &&
    h["if-none-match"] === undefined && h["if-modified-since"] === undefined && h.host !== undefined &&
    !(cors && h.origin !== undefined)
}

export interface FrontCache {
  /** Answers a request from the cache, or hands it to `app`. */
  readonly handle: (request: IncomingMessage, response: ServerResponse, app: RequestListener) => void
  /** The app's middleware that stores the answers of the requests `handle` missed. */
  readonly storeAnswers: (app: HttpApp.Default) => HttpApp.Default
}

/** The request's entry key, for requests that missed and may be stored. */
const missed = new WeakMap<IncomingMessage, string>()

const passThrough: FrontCache = {
  handle: (request, response, app) => app(request, response),
  storeAnswers: (app) => app
}

export const makeFrontCache = Effect.gen(function*() {
  const ttlSeconds = yield* FrontCacheTtl
  const tracing = yield* Effect.serviceOption(Tracing)
  const traced = Option.isSome(tracing) && tracing.value.enabled
  if (ttlSeconds === 0 || traced || frontCachedPaths.size === 0) return passThrough
  const conventions = yield* HttpConventionsConfig
  const admissions = yield* Admissions
  const redis = yield* Redis
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const warning = rateLimitedWarning()
  const cors = conventions.corsOrigins.length > 0
  const lookupOf = (request: IncomingMessage): Lookup | undefined => {
    const url = request.url
    if (url === undefined || url.length > MAX_URL || !plainGet(request, cors)) return undefined
    const q = url.indexOf("?")
    const path = (q < 0 ? url : url.slice(0, q)).replace(/\/+$/, "")
    const route = frontCachedPaths.get(path)
    if (route === undefined) return undefined
    const query = canonicalQuery(q < 0 ? "" : url.slice(q + 1), route.params)
    if (query === undefined) return undefined
    const header = request.headers.authorization
    if (header === undefined || !BEARER.test(header)) return undefined
    const admission = admissions.find(header.slice(7).trim())
    if (admission === undefined) return undefined
    return {
      counter: route.counter,
      before: `${PREFIX}${route.counter}:`,
      after: `:${admission.digest}:${path}?${query}`,
      route: path
    }
  }

  const answer = (request: IncomingMessage, response: ServerResponse, body: Buffer, route: string, started: number) => {
    const id = requestIdOf(request.headers[REQUEST_ID_HEADER] as string | undefined)
    response.writeHead(200, { "content-type": CONTENT_TYPE, "content-length": body.length, [REQUEST_ID_HEADER]: id })
    response.end(body)
    recordRequest("GET", route, 200, started)
    if (conventions.accessLog !== "off" && accessLogged(conventions, 200)) {
      runFork(Effect.annotateLogs(accessLine("GET", request.url!, 200, started), "requestId", id))
    }
  }

  const handle = (request: IncomingMessage, response: ServerResponse, app: RequestListener) => {
    const l = lookupOf(request)
    if (l === undefined) return app(request, response)
    const started = performance.now()
    redis.lookupUnderGeneration(l.counter, l.before, l.after).then(
      ([generation, body]) => {
        if (response.destroyed) return
        if (body !== null) return answer(request, response, body, l.route, started)
        missed.set(request, `${l.before}${generation.toString()}${l.after}`)
        app(request, response)
      },
      (e: unknown) => {
        runFork(warning.warn(`HTTP front cache unavailable: ${e instanceof Error ? e.message : String(e)}`))
        if (!response.destroyed) app(request, response)
      }
    )
  }

  const storeAnswers = (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const key = missed.get(NodeHttpServerRequest.toIncomingMessage(request))
      if (key === undefined) return app
      return Effect.tap(app, (response) => {
        const body = response.body
        // Only an answer the cache can send again as it is: a 200 of JSON bytes with no headers of its own.
        if (
          response.status !== 200 || body._tag !== "Uint8Array" || body.contentType !== CONTENT_TYPE ||
          Object.keys(response.headers).some((name) => !BODY_HEADERS.has(name))
        ) return
        redis.client.set(
          key,
          Buffer.from(body.body.buffer, body.body.byteOffset, body.body.byteLength),
          "EX",
          ttlSeconds
        ).catch((e: unknown) =>
          runFork(warning.warn(`HTTP front cache unavailable: ${e instanceof Error ? e.message : String(e)}`))
        )
      })
    })

  return { handle, storeAnswers } satisfies FrontCache
})

export class FrontCacheService extends Context.Tag("OpsDesk/App/FrontCache")<FrontCacheService, FrontCache>() {}

/** One front cache for the server's listener (Server.ts NodeServerLive) and the app's middleware. */
export const FrontCacheLive = Layer.effect(FrontCacheService, makeFrontCache).pipe(Layer.provide(Admissions.Default))
