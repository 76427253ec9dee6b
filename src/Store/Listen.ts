/**
 * LISTEN on a PostgreSQL channel over a connection of its own that notices its
 * own death. @effect/sql-pg's `listen` shares one connection per client and
 * ignores that connection's errors: once it is lost (a database restart, a
 * network cut), its streams go quiet without failing, and every notification
 * from then on is missed. Here the connection is checked every `check` with a
 * query of its own, replaced when it fails, and each new LISTEN after the
 * first is reported as `resumed`, so a consumer can catch up on what it may
 * have missed in between.
 */
import { Config, type ConfigError, Duration, Effect, Redacted, Schedule, type Scope } from "effect"
import pg from "pg"
import { DatabaseApplicationName, DatabaseConnectTimeout, DatabaseUrl } from "../Config.js"
import { describe } from "../Kit/Cause.js"
import { rateLimitedWarning } from "../Kit/Warnings.js"

export type ListenEvent =
  | { readonly _tag: "Notification"; readonly payload: string }
  /** LISTEN is in place; `resumed` after a lost connection: notifications may have been missed. */
  | { readonly _tag: "Listening"; readonly resumed: boolean }

/** The connection settings of the process's pool (Store/Sql.ts). */
const ListenSettings = Config.all({
  url: DatabaseUrl,
  connectTimeout: DatabaseConnectTimeout,
  applicationName: DatabaseApplicationName
})

/**
 * Runs until interrupted: connects, LISTENs on `channel`, hands every
 * notification and every (re)start to `onEvent` (synchronously, in the
 * connection's event handler: keep it short), and reconnects with a capped
 * backoff whenever the connection fails, ends, or misses a check.
 */
export const listenChannel = (
  channel: string,
  check: Duration.DurationInput,
  onEvent: (event: ListenEvent) => void,
  settings: Config.Config.Success<typeof ListenSettings>
): Effect.Effect<never> =>
  Effect.suspend(() => {
    const { applicationName, connectTimeout, url } = settings
    const warning = rateLimitedWarning()
    let sessions = 0

    const connect = Effect.acquireRelease(
      Effect.tryPromise(async () => {
        const client = new pg.Client({
          connectionString: Redacted.value(url),
          connectionTimeoutMillis: Duration.toMillis(connectTimeout),
          application_name: `${applicationName}-listen`,
          keepAlive: true
        })
        // Without a listener an 'error' event would be thrown; the session below watches for it.
        client.on("error", () => {})
        try {
          await client.connect()
        } catch (e) {
          client.end().catch(() => {})
          throw e
        }
        return client
      }),
      // A dead socket may never answer the terminate message: do not wait for it long.
      // A release is uninterruptible: `interruptible` lets the timeout end the wait.
      (client) =>
        Effect.promise(() => client.end().catch(() => {})).pipe(Effect.interruptible, Effect.timeoutOption("1 second"))
    )

    const session = Effect.gen(function*() {
      const client = yield* connect
      const lost = Effect.async<never, Error>((resume) => {
        client.on("error", (e) => resume(Effect.fail(e)))
        client.on("end", () => resume(Effect.fail(new Error("the connection ended"))))
      })
      client.on("notification", (n) => {
        if (n.channel === channel) onEvent({ _tag: "Notification", payload: n.payload ?? "" })
      })
      yield* Effect.tryPromise(() => client.query(`LISTEN ${client.escapeIdentifier(channel)}`))
      onEvent({ _tag: "Listening", resumed: sessions++ > 0 })
      const checked = Effect.tryPromise(() => client.query("SELECT 1")).pipe(
        Effect.timeoutFail({ duration: check, onTimeout: () => new Error("the connection did not answer a check") }),
        Effect.zipRight(Effect.sleep(check)),
        Effect.forever
      )
      return yield* Effect.raceFirst(lost, checked)
    }).pipe(Effect.scoped)

    return session.pipe(
      Effect.tapError((e) => warning.warn(`LISTEN ${channel}: ${describe("error" in e ? e.error : e)}; reconnecting`)),
      Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.either(Schedule.spaced("5 seconds")))),
      Effect.orDie
    )
  })

/** `listenChannel` with the database's settings, as a fiber of the scope's lifetime. */
export const forkListener = (
  channel: string,
  check: Duration.DurationInput,
  onEvent: (event: ListenEvent) => void
): Effect.Effect<void, ConfigError.ConfigError, Scope.Scope> =>
  Effect.flatMap(ListenSettings, (settings) => Effect.forkScoped(listenChannel(channel, check, onEvent, settings)))
