/**
 * A client of `GET /v1/notifications/stream` for the tests: opens the stream
 * as a user (optionally with Last-Event-ID), parses its Server-Sent Events
 * and hands them out one by one, with the time each one arrived.
 */
import * as Sse from "@effect/experimental/Sse"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { expect } from "@effect/vitest"
import { Effect, Exit, Fiber, Queue, Schema, Scope, Stream } from "effect"
import { Notification } from "../../../src/Notifications/InApp.js"
import type { TestUser } from "../../api/support/Fixtures.js"

export interface OpenStream {
  readonly status: number
  readonly text: string
  /** The next `notification` or `end` event (fails after a generous timeout). */
  readonly next: Effect.Effect<Sse.Event, Error>
  /** Everything received so far, verbatim. */
  readonly raw: () => string
  /** When (performance.now()) the event with this id was parsed off the wire. */
  readonly arrivedAt: (id: string) => number | undefined
  /** Disconnects. */
  readonly close: Effect.Effect<void>
  /** Resolves when the server ended the response. */
  readonly ended: Effect.Effect<void, unknown>
}

export const openStream = (user: TestUser, lastEventId?: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const scope = yield* Scope.make()
    let request = HttpClientRequest.get("/v1/notifications/stream").pipe(HttpClientRequest.bearerToken(user.token))
    if (lastEventId !== undefined) request = HttpClientRequest.setHeader(request, "last-event-id", lastEventId)
    const response = yield* client.execute(request).pipe(Scope.extend(scope), Effect.orDie)
    const events = yield* Queue.unbounded<Sse.Event>()
    const arrived = new Map<string, number>()
    let raw = ""
    const close = Scope.close(scope, Exit.void)
    if (response.status !== 200) {
      const text = yield* Effect.orDie(response.text)
      yield* close
      const refused: OpenStream = {
        status: response.status,
        text,
        next: Effect.die("no stream"),
        raw: () => "",
        arrivedAt: () => undefined,
        close,
        ended: Effect.void
      }
      return refused
    }
    expect(response.headers["content-type"]).toMatch(/^text\/event-stream/)
    const parser = Sse.makeParser((event) => {
      if (event._tag !== "Event") return
      if (event.id !== undefined) arrived.set(event.id, performance.now())
      events.unsafeOffer(event)
    })
    const reader = yield* response.stream.pipe(
      Stream.decodeText(),
      Stream.runForEach((chunk) =>
        Effect.sync(() => {
          raw += chunk
          parser.feed(chunk)
        })
      ),
      Effect.forkIn(scope)
    )
    const stream: OpenStream = {
      status: 200,
      text: "",
      next: Queue.take(events).pipe(
        Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("no event arrived") })
      ),
      raw: () => raw,
      arrivedAt: (id) => arrived.get(id),
      close,
      ended: Fiber.join(reader)
    }
    yield* Effect.addFinalizer(() => close)
    return stream
  })

export const notificationOf = (event: Sse.Event) => Schema.decodeUnknownSync(Notification)(JSON.parse(event.data))
