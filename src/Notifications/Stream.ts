/**
 * The live in-app feed, `GET /v1/notifications/stream` (Server-Sent Events).
 *
 * One LISTEN connection per API process (Store/Listen.ts) on the channel the
 * notifications trigger fills at commit (migration 0011: recipient and id
 * range per inserting statement); `InAppFeed` fans each NOTIFY out in process
 * to the open streams of that recipient only. A stream reads the rows
 * themselves from the table, a page at a time: a NOTIFY only says where to
 * look, so nothing is lost when wake-ups coalesce, and a lost LISTEN
 * connection makes every stream catch up from the table once the new one is
 * in place (from the lowest id it still remembers sending, so a row whose
 * lower id committed late, during the outage, is found too).
 *
 * Each event's SSE id is the highest notification id the stream has sent so
 * far; a reconnect with `Last-Event-ID` replays every row after it, then goes
 * live. A stream is registered (for its NOTIFYs, and against the per-user
 * limit) before its replay runs, so a row committed meanwhile is not missed;
 * the ids it sent are remembered so none is sent twice. What a replay cannot
 * see: a row with an id at or below Last-Event-ID whose transaction committed
 * after the client disconnected (ids are taken at insert, the worker's
 * transactions commit in their own order, within milliseconds); the listing
 * (`GET /v1/notifications`) has it.
 *
 * A stream ends on its own, with a last `end` event naming the reason, when
 * the process shuts down (`shutdown`: reconnect, to another instance), when
 * the access token expires (`expired`: reconnect with a fresh token), or when
 * the caller's access is revoked (`revoked`, checked at every heartbeat).
 */
import * as Sse from "@effect/experimental/Sse"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Deferred, Duration, Effect, Option, Queue, Schema, type Scope, Stream } from "effect"
import type { Actor } from "../Auth/CurrentUser.js"
import type { Unauthorized } from "../Auth/Errors.js"
import { NotificationStreamConfig } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import { ValidationError } from "../Kit/Errors.js"
import { forkListener } from "../Store/Listen.js"
import { InAppNotifications, NotificationId, type NotificationRow, toNotification } from "./InApp.js"

export const IN_APP_CHANNEL = "opsdesk_in_app"

/** The caller has as many streams open as NOTIFICATIONS_STREAM_MAX_PER_USER allows. */
export class TooManyStreams extends Schema.TaggedError<TooManyStreams>()(
  "TooManyStreams",
  { message: Schema.String },
  { description: "The caller already has the most notification streams open that one user may have" }
) {}

/** Why a stream ended (its last event). */
export type EndReason = "shutdown" | "expired" | "revoked"

/** Ranges a stream keeps before it gives up on them and reads everything after its cursor instead. */
const MAX_PENDING_RANGES = 64
/** Ids a stream remembers having sent, so a range overlapping what it already sent repeats nothing. */
const SENT_MEMORY = 1024
/** Rows read per query: a long replay goes out in pages. */
const PAGE = 200

interface Subscriber {
  readonly wake: Queue.Queue<void>
  ranges: Array<readonly [string, string]>
  /** Read everything after the cursor: ranges were dropped, or the LISTEN connection was replaced. */
  resync: boolean
}

const signal = (subscriber: Subscriber) => void subscriber.wake.unsafeOffer(undefined)

/** `<uuid>:<lo>:<hi>`, as the trigger writes it; undefined for anything else. */
const parsePayload = (payload: string) => {
  const [recipient, lo, hi, ...rest] = payload.split(":")
  if (rest.length > 0 || recipient === undefined || lo === undefined || hi === undefined) return undefined
  if (!/^\d+$/.test(lo) || !/^\d+$/.test(hi)) return undefined
  return { recipient: recipient.toLowerCase(), range: [lo, hi] as const }
}

/**
 * The ids a stream sent, at most `capacity` of them: every sent id above
 * `floor` is still here, so a resync reads from `floor` and skips what it
 * finds here. The smallest id is the one forgotten: a resync reads upwards,
 * so it never meets an id it forgot meanwhile and sends it twice.
 */
export class SentIds {
  private readonly ids = new Set<string>()
  // The same ids, ascending (rows mostly arrive in id order, so an insert lands near the end).
  private readonly ascending: Array<bigint> = []
  constructor(public floor: string, private readonly capacity: number) {}

  has(id: string): boolean {
    return this.ids.has(id)
  }

  add(id: string): void {
    this.ids.add(id)
    const n = BigInt(id)
    let at = this.ascending.length
    while (at > 0 && this.ascending[at - 1]! > n) at--
    this.ascending.splice(at, 0, n)
    if (this.ascending.length > this.capacity) {
      const forgotten = this.ascending.shift()!
      this.ids.delete(forgotten.toString())
      if (forgotten > BigInt(this.floor)) this.floor = forgotten.toString()
    }
  }
}

export class InAppFeed extends Effect.Service<InAppFeed>()("OpsDesk/Notifications/InAppFeed", {
  scoped: Effect.gen(function*() {
    const config = yield* NotificationStreamConfig
    const byUser = new Map<string, Set<Subscriber>>()
    const closing = yield* Deferred.make<void>()
    // First in, last out: every stream is told to end before the LISTEN connection goes.
    yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))

    const everyone = (f: (s: Subscriber) => void) => byUser.forEach((set) => set.forEach(f))
    yield* forkListener(IN_APP_CHANNEL, config.listenCheck, (event) => {
      if (event._tag === "Listening") {
        if (event.resumed) {
          everyone((s) => {
            s.resync = true
            s.ranges = []
            signal(s)
          })
        }
        return
      }
      const parsed = parsePayload(event.payload)
      if (parsed === undefined) return
      byUser.get(parsed.recipient)?.forEach((s) => {
        if (s.resync) return
        if (s.ranges.length >= MAX_PENDING_RANGES) {
          s.resync = true
          s.ranges = []
        } else {
          s.ranges.push(parsed.range)
        }
        signal(s)
      })
    })

    /**
     * A stream's registration for `userId`, in the scope (the request's: it
     * ends when the response does); TooManyStreams when the user already has
     * `maxPerUser` open in this process.
     */
    const register = (userId: string): Effect.Effect<Subscriber, TooManyStreams, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.flatMap(Queue.sliding<void>(1), (wake) => {
          const set = byUser.get(userId) ?? new Set<Subscriber>()
          if (set.size >= config.maxPerUser) {
            return Effect.fail(
              new TooManyStreams({
                message: `at most ${config.maxPerUser} notification streams may be open at once; close one first`
              })
            )
          }
          const subscriber: Subscriber = { wake, ranges: [], resync: false }
          set.add(subscriber)
          byUser.set(userId, set)
          return Effect.succeed(subscriber)
        }),
        (subscriber) =>
          Effect.sync(() => {
            const set = byUser.get(userId)
            set?.delete(subscriber)
            if (set?.size === 0) byUser.delete(userId)
          })
      )

    return { register, closing: Deferred.await(closing), heartbeat: config.heartbeat } as const
  })
}) {}

const encoder = new TextEncoder()
const bytes = (text: string) => encoder.encode(text)

/** `Last-Event-ID`: a notification id we sent (or "0"); a 400 for anything else. */
export const parseLastEventId = (header: string | undefined): Effect.Effect<string | undefined, ValidationError> => {
  if (header === undefined || header.trim() === "") return Effect.succeed(undefined)
  const id = header.trim()
  return id === "0" || Schema.is(NotificationId)(id)
    ? Effect.succeed(id)
    : Effect.fail(
      new ValidationError({ field: "Last-Event-ID", message: "Last-Event-ID must be an id this stream sent" })
    )
}

export interface StreamAccess {
  /** Whether the caller may still read: the token and the user as the database has them now. */
  readonly recheck: Effect.Effect<void, Unauthorized>
  /** When the access token expires. */
  readonly expiresAt: Date
}

/**
 * The SSE body of one caller's stream, registered now (so TooManyStreams
 * answers 429 before any byte is sent; the registration lasts as long as the
 * request's scope, that is, until the response ends).
 */
export const openStream = (actor: Actor, lastEventId: string | undefined, access: StreamAccess) =>
  Effect.gen(function*() {
    const feed = yield* InAppFeed
    const inApp = yield* InAppNotifications
    const subscriber = yield* feed.register(actor.id)
    // The cursor is taken after registering: a row committed from here on is either found by the
    // replay or announced to the subscriber (or both: `sent` drops the second).
    let cursor = lastEventId ?? (yield* Effect.orDie(inApp.newestId(actor.id)))
    const replaying = lastEventId !== undefined
    const sent = new SentIds(cursor, SENT_MEMORY)
    const emit = (rows: ReadonlyArray<NotificationRow>) => {
      let text = ""
      for (const row of rows) {
        if (sent.has(row.id)) continue
        sent.add(row.id)
        if (BigInt(row.id) > BigInt(cursor)) cursor = row.id
        text += Sse.encoder.write({
          _tag: "Event",
          event: "notification",
          id: cursor,
          data: JSON.stringify(toNotification(row))
        })
      }
      return text
    }

    /**
     * Every row above `from` (in `ranges`, when given), a page at a time as
     * SSE text: each page starts above the last row of the one before, so a
     * wake-up naming more rows than a page holds sends them all.
     */
    const pages = (from: string | undefined, ranges?: ReadonlyArray<readonly [string, string]>) =>
      Stream.paginateEffect(from, (above) =>
        Effect.map(inApp.since(actor.id, { above, ranges }, PAGE), (rows) =>
          [
            emit(rows),
            rows.length === PAGE ? Option.some<string | undefined>(rows[rows.length - 1]!.id) : Option.none()
          ] as const))

    /** Each wake-up: the ranges announced since the last one (or, on a resync, everything recent). */
    const live: Stream.Stream<string, SqlError> = Stream.repeatEffect(Queue.take(subscriber.wake)).pipe(
      Stream.flatMap(() => {
        if (subscriber.resync) {
          subscriber.resync = false
          subscriber.ranges = []
          // From the floor, not the cursor: a row below the cursor whose transaction committed while
          // its NOTIFY was lost is found too, and `sent` keeps the rest from going out twice.
          return pages(sent.floor)
        }
        const ranges = subscriber.ranges
        subscriber.ranges = []
        return pages(undefined, ranges)
      })
    )

    const ended = yield* Deferred.make<EndReason>()
    const heartbeat: Stream.Stream<string> = Stream.repeatEffect(
      Effect.zipRight(
        Effect.sleep(feed.heartbeat),
        access.recheck.pipe(
          Effect.as(": heartbeat\n\n"),
          Effect.catchAll(() => Effect.as(Deferred.succeed(ended, "revoked"), ""))
        )
      )
    )
    const expiry = Effect.sleep(Duration.millis(Math.max(0, access.expiresAt.getTime() - Date.now())))

    const body = Stream.concat(replaying ? pages(cursor) : Stream.empty, live).pipe(
      Stream.merge(heartbeat),
      Stream.filter((text) => text !== ""),
      Stream.interruptWhen(
        Effect.raceAll([
          Deferred.await(ended),
          Effect.as(feed.closing, "shutdown" as const),
          Effect.as(expiry, "expired" as const)
        ]).pipe(Effect.flatMap((reason) => Deferred.succeed(ended, reason)))
      )
    )
    const end = Stream.fromEffect(
      Effect.map(
        Deferred.await(ended),
        (reason) => Sse.encoder.write({ _tag: "Event", event: "end", id: undefined, data: JSON.stringify({ reason }) })
      )
    )
    // Clients reconnect after 3 s (the SSE default varies by client); the comment makes the headers go out at once.
    const opening = Stream.make("retry: 3000\n: connected\n\n")
    return Stream.concat(opening, Stream.concat(body, end)).pipe(
      Stream.tapErrorCause((cause) =>
        Effect.logWarning(`Notification stream of ${actor.id} failed: ${describe(Cause.squash(cause))}`)
      ),
      Stream.map(bytes)
    )
  })
