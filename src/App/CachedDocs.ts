/**
 * `/docs` (the Scalar page, 3.3 MB with its inline script), `/openapi.json`
 * and `/asyncapi.json` are fixed for the life of the process: the platform builds each response
 * once (HttpApiScalar, middlewareOpenApi). This middleware prepares each of
 * them once more, on its first request: an ETag, and a gzip copy. Clients get
 * `Cache-Control: no-cache` (keep it, revalidate it: a matching
 * `If-None-Match` is a 304 without a body) and the gzip copy when their
 * `Accept-Encoding` takes it. Every other route passes through untouched.
 */
import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { promisify } from "node:util"
import { gzip } from "node:zlib"

export const CACHED_PATHS: ReadonlySet<string> = new Set(["/docs", "/openapi.json", "/asyncapi.json"])

const CACHE_CONTROL = "public, no-cache"

interface Prepared {
  readonly etag: string
  readonly gzipEtag: string
  readonly identity: HttpServerResponse.HttpServerResponse
  readonly gzipped: HttpServerResponse.HttpServerResponse
  readonly notModified: HttpServerResponse.HttpServerResponse
}

const gzipAsync = promisify(gzip)

const prepare = (response: HttpServerResponse.HttpServerResponse, body: Uint8Array, contentType: string) =>
  Effect.map(Effect.promise(() => gzipAsync(body)), (compressed): Prepared => {
    const hash = createHash("sha256").update(body).digest("base64url").slice(0, 27)
    const etag = `"${hash}"`
    const gzipEtag = `"${hash}-gzip"`
    const common = { "cache-control": CACHE_CONTROL, vary: "accept-encoding" }
    return {
      etag,
      gzipEtag,
      identity: HttpServerResponse.setHeaders(response, { ...common, etag }),
      gzipped: HttpServerResponse.uint8Array(compressed, {
        status: response.status,
        contentType,
        headers: { ...common, etag: gzipEtag, "content-encoding": "gzip" }
      }),
      notModified: HttpServerResponse.empty({ status: 304, headers: common })
    }
  })

/**
 * Whether `Accept-Encoding` takes gzip (RFC 9110 §12.5.3: `gzip`, `x-gzip`
 * or `*`, with a non-zero q). Hand-written: a few tokens, no dependency.
 */
export const acceptsGzip = (header: string | undefined): boolean =>
  header !== undefined && header.split(",").some((part) => {
    const [coding = "", ...params] = part.split(";").map((s) => s.trim().toLowerCase())
    const q = params.find((p) => p.startsWith("q="))
    return ["gzip", "x-gzip", "*"].includes(coding) && (q === undefined || Number(q.slice(2)) > 0)
  })

/** Whether `If-None-Match` names one of the ETags (weak comparison, RFC 9110 §13.1.2). */
const matches = (header: string | undefined, etags: ReadonlyArray<string>) =>
  header !== undefined &&
  header.split(",").some((tag) => {
    const t = tag.trim().replace(/^W\//, "")
    return t === "*" || etags.includes(t)
  })

/** Per response object: the platform answers these paths with the same object every time. */
const cache = new WeakMap<HttpServerResponse.HttpServerResponse, Effect.Effect<Prepared>>()

const preparedFor = (response: HttpServerResponse.HttpServerResponse) => {
  let prepared = cache.get(response)
  if (prepared === undefined) {
    const body = response.body
    if (body._tag !== "Uint8Array") return undefined
    prepared = Effect.runSync(Effect.cached(prepare(response, body.body, body.contentType)))
    cache.set(response, prepared)
  }
  return prepared
}

/**
 * Runs after the pre-response handlers of outer middleware (CORS sets `Vary: Origin`, replacing the header):
 * `Accept-Encoding` stays in `Vary`, or a shared cache could hand the gzip copy to a client that cannot read it.
 */
const keepVaryEncoding = HttpApp.appendPreResponseHandler((_request, response) => {
  const vary = response.headers["vary"]
  if (vary === undefined || /accept-encoding/i.test(vary)) return Effect.succeed(response)
  return Effect.succeed(HttpServerResponse.setHeader(response, "vary", `${vary}, accept-encoding`))
})

export const cachedDocs = (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const path = request.url.split("?", 1)[0]!
    if (!CACHED_PATHS.has(path) || (request.method !== "GET" && request.method !== "HEAD")) return app
    return Effect.zipRight(keepVaryEncoding, app).pipe(Effect.flatMap((response) => {
      const prepared = response.status === 200 ? preparedFor(response) : undefined
      if (prepared === undefined) return Effect.succeed(response)
      return Effect.map(prepared, (p) =>
        matches(request.headers["if-none-match"], [p.etag, p.gzipEtag])
          ? p.notModified
          : acceptsGzip(request.headers["accept-encoding"])
          ? p.gzipped
          : p.identity)
    }))
  })
