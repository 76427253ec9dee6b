/**
 * The dispatcher: delivers the `deliveries` rows the worker's claim statement
 * wrote, at least once each, and records every try.
 *
 * One loop per channel, each with its own pool (DISPATCH_EMAIL_CONCURRENCY,
 * DISPATCH_WEBHOOK_CONCURRENCY), so a slow SMTP server or webhook endpoint
 * holds only its own channel's deliveries; webhooks also have a limit per
 * subscription in flight, so one slow receiver cannot take the whole pool. A
 * loop claims as many due rows as it has free slots (Repo.ts: SKIP LOCKED and
 * a lease, so several dispatchers never take the same row while its lease
 * holds), sends each in its own fiber, and sleeps until a NOTIFY on
 * `opsdesk_deliveries` (new deliveries, a retry from the CLI), a freed slot,
 * the next delivery falling due, or the poll interval.
 *
 * Retries use the worker's two tiers (src/Worker/RetryPolicy.ts): a few quick
 * retries within the claim (`RetryPolicy.immediate`), then the worker's
 * backoff (`retryDelays`, MAX_RETRIES rounds), each round a new claim. A
 * permanent outcome, or a retryable one after the last round, leaves the
 * delivery `failed` with the reason, for the CLI and the dashboard to list and
 * retry. A dispatcher that dies mid-send leaves the lease to expire: the
 * delivery is sent again then (the receiver can tell by its idempotency key).
 * One that is stopped cuts off the sends under way the same way, but records
 * every try whose send is over.
 */
import { Cause, Clock, Duration, Effect, Layer, Option, Queue, Schedule } from "effect"
import { retryDelays } from "../Broker/Topology.js"
import { DispatchConfig, type DispatchConfig as DispatchSettings, WorkerConfig } from "../Config.js"
import { traced } from "../Observability/Span.js"
import { forkListener } from "../Store/Listen.js"
import * as RetryPolicy from "../Worker/RetryPolicy.js"
import {
  type ChannelSender,
  type DeliveryChannel,
  type DeliveryJob,
  type DeliveryOutcome,
  EmailSender,
  Retryable,
  WebhookSender
} from "./Channel.js"
import { countAttempt, countClaims } from "./Metrics.js"
import { type Attempt, type Claimed, type DeliveriesError, DeliveriesRepo, type NextState } from "./Repo.js"

/** The NOTIFY channel that wakes dispatchers (migration 0009's trigger, and a retry). */
export const WAKE_CHANNEL = "opsdesk_deliveries"

export type RetrySettings = Pick<
  WorkerConfig,
  "maxRetries" | "retryInitialDelay" | "retryMaxDelay" | "immediateRetries" | "immediateRetryDelay"
>

export interface DispatcherOptions {
  readonly dispatch: DispatchSettings
  readonly retry: RetrySettings
}

/** The least a loop waits when due rows exist that it cannot take (all held elsewhere): no busy loop. */
const IDLE_FLOOR_MS = 250

/** What to do after a try: its log entry and the delivery's next state. */
export const decide = (
  outcome: DeliveryOutcome,
  context: {
    readonly round: number
    readonly quickRetriesLeft: boolean
    readonly retry: RetrySettings
    readonly delays: ReadonlyArray<number>
    readonly leaseMs: number
    /** The try's number (DeliveryJob.attempt). */
    readonly attempt: number
  },
  durationMs: number
): { readonly attempt: Attempt; readonly next: NextState } => {
  const status = outcome.status ?? null
  const tryNumber = context.attempt
  switch (outcome._tag) {
    case "Delivered":
      return {
        attempt: { attempt: tryNumber, outcome: "delivered", status, error: null, durationMs },
        next: { _tag: "Delivered" }
      }
    case "Permanent":
      return {
        attempt: { attempt: tryNumber, outcome: "failed", status, error: outcome.reason, durationMs },
        next: { _tag: "Failed" }
      }
    case "Retryable": {
      if (context.quickRetriesLeft) {
        return {
          attempt: { attempt: tryNumber, outcome: "retry", status, error: outcome.reason, durationMs },
          next: { _tag: "RetryNow", leaseMs: context.leaseMs }
        }
      }
      // Round r is followed by the worker's r-th backoff delay; after MAX_RETRIES of them, give up.
      if (context.round > context.retry.maxRetries) {
        return {
          attempt: { attempt: tryNumber, outcome: "failed", status, error: outcome.reason, durationMs },
          next: { _tag: "Failed" }
        }
      }
      const delayMs = context.delays[context.round - 1] ?? context.delays[context.delays.length - 1] ?? 0
      return {
        attempt: { attempt: tryNumber, outcome: "retry", status, error: outcome.reason, durationMs },
        next: { _tag: "RetryLater", delayMs }
      }
    }
  }
}

const describeCause = (cause: Cause.Cause<unknown>) => {
  const squashed = Cause.squash(cause)
  return squashed instanceof Error ? squashed.message : String(squashed)
}

/** Runs until interrupted: the loops of every channel that has a sender, and the wake-up listener. */
export const runDispatcher = (options: DispatcherOptions) =>
  Effect.gen(function*() {
    const repo = yield* DeliveriesRepo
    const email = yield* EmailSender
    const webhook = yield* Effect.serviceOption(WebhookSender)
    const { dispatch, retry } = options
    const delays = retryDelays(retry)
    const leaseMs = Duration.toMillis(dispatch.lease)
    // Bounds a sender that breaks its promise to answer: well inside the lease, so no one else takes the row meanwhile.
    const sendLimit = Duration.millis(Math.max(1000, Math.floor(leaseMs / (retry.immediateRetries + 2))))

    const channels: Array<{ channel: DeliveryChannel; sender: ChannelSender; concurrency: number; perKey: number }> = [
      { channel: "email", sender: email, concurrency: dispatch.emailConcurrency, perKey: dispatch.emailConcurrency }
    ]
    if (Option.isSome(webhook)) {
      channels.push({
        channel: "webhook",
        sender: webhook.value,
        concurrency: dispatch.webhookConcurrency,
        perKey: dispatch.perSubscription
      })
    }
    const wakes = new Map<DeliveryChannel, Queue.Queue<void>>()
    for (const c of channels) wakes.set(c.channel, yield* Queue.sliding<void>(1))
    const wakeAll = () => {
      for (const q of wakes.values()) Queue.unsafeOffer(q, undefined)
    }
    // Missed notifications while the listener was away are made up by waking every loop on each (re)start.
    yield* forkListener(WAKE_CHANNEL, "30 seconds", () => wakeAll())

    /** Retries a database step while the database is unreachable; a rejected statement is reported and dropped. */
    const persist = <A>(what: string, step: Effect.Effect<A, DeliveriesError>, fallback: A) =>
      step.pipe(
        Effect.retry({ schedule: RetryPolicy.infrastructure, while: (e) => e.transient }),
        Effect.catchAll((e) => Effect.logError(`Dispatcher: ${what}: ${e.message}`).pipe(Effect.as(fallback)))
      )

    /**
     * A try's record once its send is over: the first statement runs even if
     * the dispatcher is stopping meanwhile (else the receiver has the try, the
     * log does not, and it goes out again when the lease ends); only waiting
     * out a database outage for the next statements can be cut short.
     */
    const recordTry = (
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
      id: string,
      attempt: Attempt,
      next: NextState
    ) =>
      repo.record(id, attempt, next).pipe(
        Effect.catchAll((e) =>
          e.transient
            ? restore(persist("recording an attempt", repo.record(id, attempt, next), undefined))
            : Effect.logError(`Dispatcher: recording an attempt: ${e.message}`)
        )
      )

    const deliverOne = (sender: ChannelSender, claimed: Claimed) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const quick = yield* Schedule.driver(RetryPolicy.immediate(retry))
          let job: DeliveryJob = claimed.job
          let quickUsed = 0
          while (true) {
            const started = yield* Clock.currentTimeMillis
            const outcome = yield* restore(Effect.timeoutTo(sender.deliver(job), {
              duration: sendLimit,
              onSuccess: (o): DeliveryOutcome => o,
              onTimeout: () => Retryable(`No outcome within ${Duration.format(sendLimit)}`)
            })).pipe(
              Effect.catchAllCause((cause) =>
                Cause.isInterruptedOnly(cause)
                  ? Effect.failCause(cause)
                  : Effect.succeed(Retryable(`Sender defect: ${describeCause(cause)}`))
              )
            )
            const durationMs = (yield* Clock.currentTimeMillis) - started
            const quickRetriesLeft = quickUsed < retry.immediateRetries
            const { attempt, next } = decide(outcome, {
              round: claimed.round,
              quickRetriesLeft,
              retry,
              delays,
              leaseMs,
              attempt: job.attempt
            }, durationMs)
            yield* countAttempt(job.channel, attempt.outcome, durationMs)
            yield* recordTry(restore, job.id, attempt, next)
            if (next._tag === "Failed") {
              yield* Effect.logWarning(
                `Delivery ${job.id} (${job.channel}, ${job.eventType} ${job.eventId}) failed after ${job.attempt} tries: ${attempt.error}`
              )
            }
            if (next._tag !== "RetryNow") return
            quickUsed++
            yield* restore(quick.next(undefined)).pipe(Effect.ignore)
            job = { ...job, attempt: job.attempt + 1 }
          }
        })
      ).pipe(
        Effect.annotateLogs({ delivery: claimed.job.id, channel: claimed.job.channel }),
        traced("Dispatcher.deliver", {
          attributes: { "opsdesk.delivery.id": claimed.job.id, "opsdesk.delivery.channel": claimed.job.channel }
        })
      )

    const loop = (c: (typeof channels)[number]) =>
      Effect.gen(function*() {
        const wake = wakes.get(c.channel)!
        let inflight = 0
        const perKey = new Map<string, number>()
        const keyOf = (job: DeliveryJob) => job.subscriptionId
        const release = (job: DeliveryJob) =>
          Effect.sync(() => {
            inflight--
            const key = keyOf(job)
            if (key !== null) {
              const n = (perKey.get(key) ?? 1) - 1
              if (n <= 0) perKey.delete(key)
              else perKey.set(key, n)
            }
            Queue.unsafeOffer(wake, undefined)
          })
        while (true) {
          const free = c.concurrency - inflight
          let claimed: ReadonlyArray<Claimed> = []
          if (free > 0) {
            const excluded = [...perKey].filter(([, n]) => n >= c.perKey).map(([k]) => k)
            claimed = yield* persist(
              "claiming",
              repo.claim({ channel: c.channel, limit: free, perKey: c.perKey, excluded, leaseMs }),
              []
            )
            if (claimed.length > 0) yield* countClaims(c.channel, claimed.length)
            for (const row of claimed) {
              inflight++
              const key = keyOf(row.job)
              if (key !== null) perKey.set(key, (perKey.get(key) ?? 0) + 1)
              yield* Effect.forkScoped(deliverOne(c.sender, row).pipe(Effect.ensuring(release(row.job))))
            }
          }
          // A full claim: there may be more due at once.
          if (free > 0 && claimed.length === free) continue
          const dueIn = free > 0 ? yield* persist("reading the next due time", repo.nextDueIn(c.channel), null) : null
          const poll = Duration.toMillis(dispatch.pollInterval)
          const wait = dueIn === null
            ? poll
            : Math.min(poll, claimed.length === 0 ? Math.max(dueIn, IDLE_FLOOR_MS) : dueIn)
          yield* Queue.take(wake).pipe(Effect.timeoutOption(Duration.millis(wait)))
        }
      }).pipe(Effect.annotateLogs({ dispatcher: c.channel }))

    yield* Effect.logInfo(`Dispatcher started: ${channels.map((c) => `${c.channel} ×${c.concurrency}`).join(", ")}`)
    yield* Effect.forEach(channels, (c) => Effect.forkScoped(loop(c)), { discard: true })
  })

/** The dispatcher as a background part of a process (the worker, `opsdesk dispatch`); off with DISPATCHER=false. */
export const DispatcherLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const dispatch = yield* DispatchConfig
    if (!dispatch.enabled) return yield* Effect.logInfo("Dispatcher off (DISPATCHER=false)")
    const retry = yield* WorkerConfig
    yield* runDispatcher({ dispatch, retry })
  })
)
