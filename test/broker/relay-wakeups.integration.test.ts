/**
 * The relay publishes on wake-ups (the writers' NOTIFYs after their commits,
 * themselves coalesced per process: Outbox.ts) and coalesces them: under a steady
 * stream of writes the next batch waits for the one in flight, and a wake-up
 * that arrived before a claim is dropped as answered by it. The danger of
 * both is a row left behind until the poll. Here the poll is ten minutes
 * away, so only the wake-ups can publish: every row of rounds of concurrent
 * single writes must go out, once each, with none left behind.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { declareTopology, queueFor } from "../../src/Broker/Topology.js"
import { getAll, startRelay } from "../security/support/Broker.js"
import { withEntities } from "../support/Entities.js"
import {
  commitEvents,
  deleteEventRows,
  InfraLive,
  ticketCreated,
  unpublished,
  waitUntil,
  withAmqp,
  withVhost
} from "../support/Env.js"

const WRITERS = 8
const ROUNDS = 30

describe("outbox relay: coalesced wake-ups", () => {
  it.live("a stream of single writes is published by wake-ups alone, every row once", () =>
    Effect.gen(function*() {
      const { url } = yield* withVhost("relay-wakeups")
      const { channel } = yield* withAmqp(url)
      yield* declareTopology(channel, { queueType: "classic", retryDelaysMs: [100] })

      const events = Array.from({ length: WRITERS * ROUNDS }, () => ticketCreated())
      const ids = events.map((e) => e.eventId)
      yield* Effect.addFinalizer(() => deleteEventRows(ids))
      yield* withEntities(events)

      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      yield* startRelay(url, scope, { OUTBOX_POLL_INTERVAL_MS: 600_000 })

      // Rounds of concurrent single-event transactions: the first wakes an idle relay, the
      // others commit while its batch is being claimed or is in flight. Each round ends with
      // nothing more to come, so a wake-up dropped when its row was not claimed strands the row.
      for (let round = 0; round < ROUNDS; round++) {
        const mine = events.slice(round * WRITERS, (round + 1) * WRITERS)
        yield* Effect.forEach(mine, (event) => commitEvents([event]), {
          concurrency: "unbounded",
          discard: true
        })
        yield* waitUntil(
          `round ${round + 1}: every row published without the poll`,
          Effect.map(unpublished(mine.map((e) => e.eventId)), (n) => n === 0),
          "10 seconds"
        )
      }

      // Once each on the queue: no row went out twice.
      const messages = yield* getAll(channel, queueFor("ticket.created"))
      const got = messages.map((m) => m.properties.messageId as string)
      expect(got.length).toBe(ids.length)
      expect(new Set(got)).toEqual(new Set(ids))
    }).pipe(Effect.scoped, Effect.provide(InfraLive)))
})
