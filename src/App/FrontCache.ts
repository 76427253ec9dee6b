/**
 * The API's one HTTP front cache, in front of the HttpApi app: the 200
 * answers of GET endpoints the contract marks `FrontCached` (Kit/Api.ts), kept
 * in Redis per bearer token and query under the generation of the counter the
 * mark names, and sent again without running the app.
 *
 * - A request is answered here only when it is a plain GET (no body, no
 *   conditional headers) of a marked path whose query the endpoint's schema
 *   accepts (`canonicalQuery`), and its token is one the Authentication
 *   middleware let in within its window (Auth/Admissions.ts): nobody gets in
 *   here who would not get in there, and a logout through this process ends
 *   it at once.
 * - The lookup reads the counter and the entry in one round trip
 *   (`Redis.lookupUnderGeneration`); a miss records the key under the
 *   generation it read, and the app's answer is stored under it
 *   (`storeAnswers`, a middleware of the app): an answer computed after the
 *   counter moved on is never read again, and the bump deletes it (it is in
 *   the generation's index).
 * - An answer sent here carries what the app's would: the request id, the
 *   request metrics and the access log line (RequestContext.ts,
 *   RequestMetrics.ts). With Redis away every request goes the whole way;
 *   with HTTP_FRONT_CACHE_TTL_S=0, traces exported (every request then has
 *   its span) or CORS_ORIGINS set (the app's answers then carry CORS
 *   headers), the cache is off.
 *
 * Hand-written: HTTP caching libraries key on URLs and Cache-Control, not on
 * a token the API's own middleware vouched for.
 */
import { HttpApi, type HttpApp, HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, Layer, Option, Runtime, Schema, SchemaAST } from "effect"
import { LRUCache } from "lru-cache"
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http"
import { Admissions } from "../Auth/Admissions.js"
import { Authentication } from "../Auth/Api.js"
import { FrontCacheTtl, HttpConventionsConfig } from "../Config.js"
import { FrontCached } from "../Kit/Api.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"
import { Tracing } from "../Observability/Otel.js"
import { generationIndexKey, Redis } from "../Store/Redis.js"
import { Api } from "./Api.js"
import { REQUEST_ID_HEADER, requestIdOf } from "./RequestContext.js"
import { accessLine, accessLogged, recordRequest } from "./RequestMetrics.js"

/** A marked path: the Redis counter its answers live under, and how its query is written in a key. */
export interface FrontCachedRoute {
  readonly counter: string
  /** The query parameters it declares. */
  readonly params: ReadonlySet<string>
  /** The query as a key names it, or `undefined` when it is not one to cache (`canonicalQuery`). */
  readonly canonical: (search: string) => string | undefined
}

/**
 * The query as the key names it: decoded with the endpoint's own schema and
 * encoded again, its parameters sorted; `undefined` for a query with a
 * parameter the endpoint does not declare, one given twice, or one the
 * endpoint would reject (the app answers it, and it is not stored). So every
 * spelling of one query (order, percent-encoding, `limit=020`) is one entry,
 * and junk cannot multiply the entries of one token.
 */
const canonicalQuery = (schema: Option.Option<Schema.Schema<never, unknown>>, route: string) => {
  if (Option.isNone(schema)) {
    return {
      params: new Set<string>(),
      canonical: (search: string) => search === "" ? "" : undefined
    }
  }
  const ast = Schema.encodedSchema(schema.value).ast
  if (!SchemaAST.isTypeLiteral(ast) || ast.indexSignatures.length > 0) {
    throw new Error(`FrontCached on ${route}: its query parameters must be a struct of named fields`)
  }
  const params: ReadonlySet<string> = new Set(ast.propertySignatures.map((p) => String(p.name)))
  const sorted = [...params].sort()
  const decode = Schema.decodeUnknownOption(schema.value)
  const encode = Schema.encodeUnknownOption(schema.value)
  // The same few queries come again and again: each is decoded once.
  const known = new LRUCache<string, { readonly query: string | undefined }>({ max: 1000 })
  const canonical = (search: string): string | undefined => {
    let found = known.get(search)
    if (found === undefined) known.set(search, found = { query: canonicalOf(search) })
    return found.query
  }
  const canonicalOf = (search: string): string | undefined => {
    const given = new URLSearchParams(search)
    const values: Record<string, string> = {}
    for (const [name, value] of given) {
      if (!params.has(name) || name in values) return undefined
      values[name] = value
    }
    const encoded = Option.flatMap(decode(values), encode)
    if (Option.isNone(encoded)) return undefined
    const fields = encoded.value as Readonly<Record<string, unknown>>
    const query = new URLSearchParams()
    for (const name of sorted) {
      if (fields[name] !== undefined) query.append(name, String(fields[name]))
    }
    return query.toString()
  }
  return { params, canonical }
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
      paths.set(path, { counter: counter.value, ...canonicalQuery(endpoint.urlParamsSchema, endpoint.path) })
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

/** Whether a client asks for something this cache does not do: a body, a revalidation. */
const plainGet = (request: IncomingMessage) => {
  const h = request.headers
  return request.method === "GET" && h["content-length"] === undefined && h["transfer-encoding"] === undefined &&
    h["if-none-match"] === undefined && h["if-modified-since"] === undefined && h.host !== undefined
}

export interface FrontCache {
  /** Answers a request from the cache, or hands it to `app`. */
  readonly handle: (request: IncomingMessage, response: ServerResponse, app: RequestListener) => void
  /** The app's middleware that stores the answers of the requests `handle` missed. */
  readonly storeAnswers: (app: HttpApp.Default) => HttpApp.Default
}

/** Where to store the answer of a request that missed: its entry, and its generation's index. */
const missed = new WeakMap<IncomingMessage, { readonly key: string; readonly index: string }>()

const passThrough: FrontCache = {
  handle: (request, response, app) => app(request, response),
  storeAnswers: (app) => app
}

export const makeFrontCache = Effect.gen(function*() {
  const ttlSeconds = yield* FrontCacheTtl
  const tracing = yield* Effect.serviceOption(Tracing)
  const traced = Option.isSome(tracing) && tracing.value.enabled
  const conventions = yield* HttpConventionsConfig
  // With CORS on, the app's answers carry its headers, Origin or not: this cache would have to copy them.
  const cors = conventions.corsOrigins.length > 0
  if (ttlSeconds === 0 || traced || cors || frontCachedPaths.size === 0) return passThrough
  const admissions = yield* Admissions
  const redis = yield* Redis
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const warning = rateLimitedWarning()
  const lookupOf = (request: IncomingMessage): Lookup | undefined => {
    const url = request.url
    if (url === undefined || url.length > MAX_URL || !plainGet(request)) return undefined
    const q = url.indexOf("?")
    const raw = q < 0 ? url : url.slice(0, q)
    // One trailing slash is the same route to the app's router; anything else is not this cache's.
    const path = raw.endsWith("/") ? raw.slice(0, -1) : raw
    const route = frontCachedPaths.get(path)
    if (route === undefined) return undefined
    const query = route.canonical(q < 0 ? "" : url.slice(q + 1))
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
        // The client went away meanwhile: counted as the app counts it (RequestMetrics.ts).
        if (response.destroyed) return recordRequest("GET", l.route, 499, started)
        if (body !== null) return answer(request, response, body, l.route, started)
        const g = generation.toString()
        missed.set(request, { key: `${l.before}${g}${l.after}`, index: generationIndexKey(l.counter, g) })
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
      const entry = missed.get(NodeHttpServerRequest.toIncomingMessage(request))
      if (entry === undefined) return app
      return Effect.tap(app, (response) => {
        const body = response.body
        // Only an answer the cache can send again as it is: a 200 of JSON bytes with no headers of its own.
        if (
          response.status !== 200 || body._tag !== "Uint8Array" || body.contentType !== CONTENT_TYPE ||
          Object.keys(response.headers).some((name) => !BODY_HEADERS.has(name))
        ) return
        // In its generation's index, so the counter's bump deletes it (Store/Redis.ts generationIndexKey).
        redis.client.multi()
          .set(entry.key, Buffer.from(body.body.buffer, body.body.byteOffset, body.body.byteLength), "EX", ttlSeconds)
          .sadd(entry.index, entry.key)
          .expire(entry.index, ttlSeconds * 2)
          .exec()
          .catch((e: unknown) =>
            runFork(warning.warn(`HTTP front cache unavailable: ${e instanceof Error ? e.message : String(e)}`))
          )
      })
    })

  return { handle, storeAnswers } satisfies FrontCache
})

export class FrontCacheService extends Context.Tag("OpsDesk/App/FrontCache")<FrontCacheService, FrontCache>() {}

/** One front cache for the server's listener (Server.ts NodeServerLive) and the app's middleware. */
export const FrontCacheLive = Layer.effect(FrontCacheService, makeFrontCache).pipe(Layer.provide(Admissions.Default))
