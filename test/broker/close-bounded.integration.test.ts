/**
 * A broker that stops answering must not hold a scope's close (and so a
 * process's shutdown) forever. Releases run uninterruptibly, and a timeout
 * ends its effect by interrupting it: the 3-second bounds on closing a
 * channel and a connection did nothing until they were made interruptible
 * (a clean-clone CI run hung 150 s in test/broker/node.integration.test.ts).
 * Here the connection goes through a TCP relay that is frozen (nothing more
 * passes either way) before the scope closes; the test fails by its own
 * timeout if the close waits for the broker.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import { connect, createServer, type Socket } from "node:net"
import { openChannel, openConfirmChannel, openConnection } from "../../src/Broker/Amqp.js"
import { withVhost } from "../support/Env.js"

/** A TCP relay to `target` that forwards until frozen; then it holds every byte, as a hung broker would. */
const relay = (target: URL) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; freeze: () => void; close: () => void }>((resume) => {
      const sockets = new Set<Socket>()
      let frozen = false
      const server = createServer((client) => {
        const upstream = connect(Number(target.port || 5672), target.hostname)
        for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
          sockets.add(from)
          from.on("data", (chunk: Buffer) => {
            if (!frozen) to.write(chunk)
          })
          from.on("error", () => undefined)
          from.on("close", () => to.destroy())
        }
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          freeze: () => void (frozen = true),
          close: () => {
            for (const s of sockets) s.destroy()
            server.close()
          }
        }))
      })
    }),
    (r) => Effect.sync(() => r.close())
  )

it.live(
  "closing a connection and its channels to a broker that stopped answering ends within its bounds",
  () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("close_bounded")
      const direct = new URL(url)
      const proxy = yield* relay(direct)
      const viaRelay = new URL(url)
      viaRelay.hostname = "127.0.0.1"
      viaRelay.port = String(proxy.port)

      const scope = yield* Scope.make()
      const connection = yield* openConnection(Redacted.make(viaRelay.toString()), "opsdesk-close-bounded").pipe(
        Scope.extend(scope)
      )
      yield* openChannel(connection).pipe(Scope.extend(scope))
      yield* openConfirmChannel(connection).pipe(Scope.extend(scope))

      proxy.freeze()
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timed)
      // Two channels and the connection, each bounded at 3 s: it ends, rather than waiting for the broker.
      expect(closed[0]).toBeDefined()
    }).pipe(Effect.scoped),
  { timeout: 30_000 }
)
