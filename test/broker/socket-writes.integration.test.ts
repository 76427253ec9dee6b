/**
 * The publisher's connection sends a tick's messages in one socket write
 * (Broker/Amqp.ts `batchSocketWrites`): amqplib alone makes one write per
 * message. The wrap reaches into amqplib's connection, so this also fails if
 * an amqplib upgrade moves the socket and the wrap silently stops applying.
 * Every message still arrives, in order. And a connection turns Nagle's
 * algorithm off (amqplib leaves it on): with a consumer on the connection, a
 * frame written while an earlier one is unacknowledged waits for the peer's
 * delayed ACK. The publisher's (no consumer) turns it back on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Socket } from "node:net"
import type { Writable } from "node:stream"
import { vi } from "vitest"
import { batchSocketWrites, openConfirmChannel, openConnection } from "../../src/Broker/Amqp.js"
import { getAll } from "../security/support/Broker.js"
import { withVhost } from "../support/Env.js"

const MESSAGES = 200

describe("RabbitMQ connections: socket writes", () => {
  it.scopedLive("a tick's publishes leave in a few writes, and all arrive in order", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("socket-writes")
      const connection = yield* openConnection(Redacted.make(url), "socket-writes-test")
      // As the publisher does with its connection (Broker/Publisher.ts).
      batchSocketWrites(connection)
      const channel = yield* openConfirmChannel(connection)
      const queue = (yield* Effect.promise(() => channel.assertQueue("", { exclusive: true }))).queue

      // The socket amqplib writes to, and a count of what reaches the kernel (one write or one writev each).
      const internal: object = connection.connection
      const socket = ("stream" in internal ? internal.stream : undefined) as Writable & {
        _write: (...args: Array<unknown>) => void
        _writev?: (...args: Array<unknown>) => void
      }
      expect(socket).toBeDefined()
      let writes = 0
      const write = socket._write.bind(socket)
      socket._write = (...args) => {
        writes++
        write(...args)
      }
      const writev = socket._writev?.bind(socket)
      if (writev) {
        socket._writev = (...args) => {
          writes++
          writev(...args)
        }
      }

      const bodies = Array.from({ length: MESSAGES }, (_, i) => `message ${i}`)
      yield* Effect.promise(() => {
        for (const body of bodies) channel.sendToQueue(queue, Buffer.from(body))
        return channel.waitForConfirms()
      })
      // amqplib alone: one write per message. Corked for the tick: the whole batch in one, give or take a tick.
      expect(writes).toBeGreaterThan(0)
      expect(writes).toBeLessThanOrEqual(5)

      const got = yield* getAll(channel, queue)
      expect(got.map((m) => m.content.toString())).toEqual(bodies)
    }))

  it.scopedLive("a connection's socket has Nagle's algorithm off, the publisher's on", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("socket-nodelay")
      const noDelay = vi.spyOn(Socket.prototype, "setNoDelay")
      yield* Effect.addFinalizer(() => Effect.sync(() => noDelay.mockRestore()))
      const connection = yield* openConnection(Redacted.make(url), "socket-nodelay-test")
      const internal: object = connection.connection
      const socket = "stream" in internal ? internal.stream : undefined
      expect(socket).toBeInstanceOf(Socket)
      // The last setting amqplib made on this connection's socket.
      const settings = noDelay.mock.contexts.flatMap((context, i) => context === socket ? [noDelay.mock.calls[i]] : [])
      expect(settings.at(-1)).toEqual([true])
      // The publisher's connection, which has no consumer, turns it back on with its batched writes.
      batchSocketWrites(connection)
      const after = noDelay.mock.contexts.flatMap((context, i) => context === socket ? [noDelay.mock.calls[i]] : [])
      expect(after.at(-1)).toEqual([false])
    }))
})
