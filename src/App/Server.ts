/**
 * Serving the API: handlers, OpenAPI at /openapi.json, docs at /docs, the
 * events' AsyncAPI at /asyncapi.json (all three cached and compressed,
 * CachedDocs.ts), Prometheus metrics at /metrics, the
 * request guards, and the Node HTTP server with explicit timeouts, a
 * connection cap and a bounded shutdown.
 */
import {
  FileSystem,
  HttpApiBuilder,
  HttpApiScalar,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpServer
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http"
import { AuthenticationLive, HttpAuthLive } from "../Auth/Http.js"
import { HttpConventionsConfig, HttpPort, HttpServerConfig } from "../Config.js"
import { HttpHealthLive } from "../Health/Http.js"
import { PROBLEM_CONTENT_TYPE, problemJson } from "../Kit/Problem.js"
import { HttpMessagesLive } from "../Messages/Http.js"
import { HttpNotificationsLive } from "../Notifications/Http.js"
import { Tracing } from "../Observability/Otel.js"
import { HttpOpsLive } from "../Ops/Http.js"
import { OpsPageRouteLive } from "../Ops/Page.js"
import { HttpTicketsLive } from "../Tickets/Http.js"
import { HttpUsersLive } from "../Users/Http.js"
import { HttpWebhooksLive } from "../Webhooks/Http.js"
import { Api } from "./Api.js"
import { AsyncApiRouteLive } from "./AsyncApiRoute.js"
import { cachedDocs } from "./CachedDocs.js"
import { FrontCacheLive, FrontCacheService } from "./FrontCache.js"
import { MetricsRouteLive } from "./MetricsRoute.js"
import { answerProtocolErrorsAsJson, BODY_LIMIT, guard, logUnhandled } from "./Middleware.js"
import { requestContext } from "./RequestContext.js"
import { measured } from "./RequestMetrics.js"

export const HttpApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([
    HttpHealthLive,
    HttpAuthLive,
    HttpUsersLive,
    HttpTicketsLive,
    HttpMessagesLive,
    HttpNotificationsLive,
    HttpOpsLive,
    HttpWebhooksLive
  ]),
  Layer.provide(AuthenticationLive)
)

/** Request bodies are read with this limit (platform default: unlimited). */
const MaxBodySizeLive = Layer.succeed(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(BODY_LIMIT)))

/**
 * The API-level middleware around every route, in this order: the request id
 * and CORS (RequestContext.ts), outside the request metrics and access log
 * (RequestMetrics.ts), outside the request guards (Middleware.ts), outside
 * the caching of /docs, /openapi.json and /asyncapi.json (CachedDocs.ts),
 * outside the storing of the front cache's answers (FrontCache.ts).
 * HttpApi's error encoding runs outside all four (the request id and CORS
 * headers reach its answers through pre-response handlers); `logUnhandled`
 * (below) is outermost.
 */
const RequestMiddlewareLive = HttpApiBuilder.middleware(
  Effect.gen(function*() {
    const cfg = yield* HttpConventionsConfig
    const front = yield* FrontCacheService
    const context = requestContext(cfg)
    const measure = measured(cfg)
    return (app) => context(measure(guard(cachedDocs(front.storeAnswers(app)))))
  })
).pipe(Layer.provide(FrontCacheLive))

const HttpServeLive = HttpApiBuilder.serve(logUnhandled).pipe(
  Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(MetricsRouteLive),
  Layer.provide(AsyncApiRouteLive),
  Layer.provide(OpsPageRouteLive),
  Layer.provide(RequestMiddlewareLive),
  Layer.provide(HttpApiLive),
  Layer.provide(MaxBodySizeLive)
)

/**
 * Everything but the listening server (tests bring NodeHttpServer.layerTest).
 * A span per request (honouring an incoming `traceparent`) only when traces
 * are exported (Observability/Otel.ts decides): otherwise it is work on every
 * request for nobody.
 */
export const HttpLive = Layer.unwrapEffect(
  Effect.map(
    Tracing,
    ({ enabled }) => enabled ? HttpServeLive : HttpMiddleware.withTracerDisabledWhen(HttpServeLive, () => true)
  )
)

/** How long shutdown waits for open connections before cutting them. */
export const SHUTDOWN_GRACE_MS = 5000

const UNAVAILABLE = problemJson(503, "Unavailable", "the server is starting or stopping")

/**
 * NodeHttpServer on PORT, with the limits of HttpServerConfig (Config.ts):
 * a client must send its headers within HTTP_HEADERS_TIMEOUT_MS and its whole
 * request within HTTP_REQUEST_TIMEOUT_MS (else 408 and the connection is
 * closed: a slow client cannot hold a connection open), an idle keep-alive
 * connection closes after HTTP_KEEP_ALIVE_TIMEOUT_MS, and connections beyond
 * HTTP_MAX_CONNECTIONS are closed as they arrive. The server's one request
 * listener is the front cache (FrontCache.ts), which hands what it does not
 * answer to the API's handler. And two fixes to v3's lifecycle:
 * - it listens before the API attaches its request handler, and a request
 *   in between would hang forever; the handler the platform attaches is
 *   taken off the listeners and called from here, and without one (until
 *   the API is built, and again during shutdown) requests get 503.
 * - its finalizer waits on `server.close()`, which lasts as long as some
 *   client keeps a connection open; the finalizer added here runs first
 *   and bounds that wait.
 */
export const NodeServerLive = Layer.scoped(
  HttpServer.HttpServer,
  Effect.gen(function*() {
    const port = yield* HttpPort
    const limits = yield* HttpServerConfig
    const front = yield* FrontCacheService
    let app: RequestListener | undefined
    const server = createServer({
      // Node's own Host check answers a bare 400; the request guard answers it as JSON instead.
      requireHostHeader: false,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks both timeouts on this interval (default 30 s, which would add up to 30 s to each).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs)
    }, (req: IncomingMessage, res: ServerResponse) => {
      if (app === undefined) {
        res.writeHead(503, { "content-type": PROBLEM_CONTENT_TYPE, connection: "close" }).end(UNAVAILABLE)
      } else {
        front.handle(req, res, app)
      }
    })
    server.keepAliveTimeout = limits.keepAliveTimeoutMs
    server.maxConnections = limits.maxConnections
    answerProtocolErrorsAsJson(server)
    // The platform's handler becomes `app`, and leaves the listeners before a request can reach it (same tick).
    server.on("newListener", (event: string | symbol, listener: RequestListener) => {
      if (event !== "request") return
      app = listener
      queueMicrotask(() => server.off("request", listener))
    })
    const httpServer = yield* NodeHttpServer.make(() => server, { port })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        app = undefined
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref()
      })
    )
    return httpServer
  })
).pipe(Layer.provide(FrontCacheLive), Layer.provideMerge(NodeHttpServer.layerContext))
