/**
 * The API under test: the real HttpLive (handlers, middleware, guards) on
 * NodeHttpServer.layerTest, against the real PostgreSQL (DATABASE_URL, the
 * tests' own database) and Redis. RabbitMQ is not needed: the publisher is a
 * fake whose connectivity a test can switch (for /ready), and the outbox relay
 * is left out, so outbox rows stay where the tests can read them.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Context, Effect, Layer, Option, Ref } from "effect"
import { createServer } from "node:net"
import { MigrateOnStart } from "../../../src/App/ApiProcess.js"
import { HttpLive, NodeServerLive } from "../../../src/App/Server.js"
import { Tokens } from "../../../src/Auth/Tokens.js"
import { Publisher } from "../../../src/Broker/Publisher.js"
import * as Otel from "../../../src/Observability/Otel.js"
import { RedisLive } from "../../../src/Store/Redis.js"
import { PgLive } from "../../../src/Store/Sql.js"
import { TicketListCache } from "../../../src/Tickets/ListCache.js"

/** Always a miss, never stores: listings come straight from the database. */
export const PassThroughCache = Layer.succeed(
  TicketListCache,
  TicketListCache.of({
    lookup: () => Effect.succeed({ hit: Option.none(), store: () => Effect.void }),
    invalidateAll: Effect.succeed(0)
  })
)

/** Whether the fake publisher reports itself connected. */
export class PublisherConnected
  extends Context.Tag("test/PublisherConnected")<PublisherConnected, Ref.Ref<boolean>>()
{}

export const FakePublisher = Layer.effectContext(
  Effect.gen(function*() {
    const connected = yield* Ref.make(true)
    const publisher = Publisher.of({
      publishAll: () => Effect.void,
      send: (messages) => Effect.succeed(Effect.succeed(messages.map(() => ({ _tag: "Confirmed" as const })))),
      isConnected: Ref.get(connected),
      node: Effect.map(Ref.get(connected), (up) => (up ? Option.some("amqp://127.0.0.1:5672") : Option.none()))
    })
    return Context.make(PublisherConnected, connected).pipe(Context.add(Publisher, publisher))
  })
)

/** The API with the given ticket-list cache (default: none, every listing from the database). */
export const apiTestLayer = <E = never, R = never>(cache: Layer.Layer<TicketListCache, E, R> = PassThroughCache) =>
  HttpLive.pipe(
    Layer.provide(MigrateOnStart),
    Layer.provideMerge(
      Layer.mergeAll(cache, FakePublisher, Tokens.Default, Otel.layer({ serviceName: "opsdesk-api-test" }))
    ),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Layer.merge(PgLive, RedisLive))
  )

const freePort = Effect.async<number>((resume) => {
  const probe = createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    probe.close(() => resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0)))
  })
})

/**
 * Like `apiTestLayer`, but on the production server (NodeServerLive, on a free
 * port) instead of layerTest: real sockets, Node's own request parsing and
 * the server's lifecycle fixes.
 */
export const apiProductionServerLayer = <E = never, R = never>(cache: Layer.Layer<TicketListCache, E, R>) =>
  Layer.unwrapEffect(Effect.map(freePort, (port) =>
    HttpLive.pipe(
      Layer.provide(MigrateOnStart),
      Layer.provideMerge(
        Layer.mergeAll(cache, FakePublisher, Tokens.Default, Otel.layer({ serviceName: "opsdesk-api-test" }))
      ),
      Layer.provideMerge(
        HttpServer.layerTestClient.pipe(
          Layer.provide(NodeHttpClient.layerWithoutAgent),
          Layer.provide(NodeHttpClient.makeAgentLayer({ keepAlive: false })),
          Layer.provideMerge(NodeServerLive.pipe(
            Layer.provide(Layer.setConfigProvider(
              ConfigProvider.fromMap(new Map([["PORT", String(port)]])).pipe(
                ConfigProvider.orElse(() => ConfigProvider.fromEnv())
              )
            ))
          ))
        )
      ),
      Layer.provideMerge(Layer.merge(PgLive, RedisLive))
    )))
