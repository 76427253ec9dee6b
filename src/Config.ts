/**
 * Every setting OpsDesk reads, in one place. Each value comes from the
 * environment through Effect `Config`, with a localhost default, so a bad
 * value fails start-up with a ConfigError naming the variable.
 */
import { Config, ConfigError, Duration, Either, LogLevel, Option, Redacted } from "effect"
import { availableParallelism } from "node:os"

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

const nonNegativeInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be an integer >= 0`, validation: (n) => n >= 0 })
  )

const millis = (name: string, fallback: number) => positiveInt(name, fallback).pipe(Config.map(Duration.millis))

export const DatabaseUrl = Config.redacted(
  Config.string("DATABASE_URL").pipe(Config.withDefault("postgres://root@127.0.0.1:5432/opsdesk"))
)
export const DatabasePoolSize = positiveInt("DATABASE_POOL_SIZE", 10)
/** Longest wait for a pooled connection (a new one, or a free one); beyond it a request fails with 503 instead of hanging. */
export const DatabaseConnectTimeout = millis("DATABASE_CONNECT_TIMEOUT_MS", 5000)
/** The pool's `application_name` (as pg_stat_activity shows it): the service's name. */
export const DatabaseApplicationName = Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("opsdesk"))
export const RedisUrl = Config.string("REDIS_URL").pipe(Config.withDefault("redis://127.0.0.1:6379"))
export const AmqpUrl = Config.redacted(
  Config.string("AMQP_URL").pipe(Config.withDefault("amqp://guest:guest@127.0.0.1:5672"))
)
/**
 * The broker URL of the operator tools (the DLQ service behind the ops dashboard and
 * `opsdesk dlq`): OPS_AMQP_URL, else AMQP_URL. The API sets it to the operator's user,
 * so its relay's own user needs no right on the DLQ (docs/SECURITY.md, Broker permissions).
 */
export const OperatorAmqpUrl = Config.redacted("OPS_AMQP_URL").pipe(Config.orElse(() => AmqpUrl))
export const QueueType = Config.literal("classic", "quorum")("QUEUE_TYPE").pipe(Config.withDefault("classic" as const))

export const HttpPort = Config.port("PORT").pipe(Config.withDefault(3000))

/**
 * The API's Node server (App/Server.ts): how long a client may take to send
 * its headers, and its whole request; how long an idle keep-alive connection
 * stays open; and how many connections are open at most (those beyond are
 * closed at once).
 */
export const HttpServerConfig = Config.all({
  headersTimeoutMs: positiveInt("HTTP_HEADERS_TIMEOUT_MS", 10_000),
  requestTimeoutMs: positiveInt("HTTP_REQUEST_TIMEOUT_MS", 30_000),
  keepAliveTimeoutMs: positiveInt("HTTP_KEEP_ALIVE_TIMEOUT_MS", 5_000),
  maxConnections: positiveInt("HTTP_MAX_CONNECTIONS", 1024)
}).pipe(
  Config.validate({
    message: "HTTP_HEADERS_TIMEOUT_MS must be <= HTTP_REQUEST_TIMEOUT_MS",
    validation: (c) => c.headersTimeoutMs <= c.requestTimeoutMs
  })
)
export type HttpServerConfig = Config.Config.Success<typeof HttpServerConfig>

/** When set (non-empty), `GET /metrics` (the API's and the worker's) answers only `Authorization: Bearer <METRICS_TOKEN>`. */
export const MetricsToken = Config.option(Config.redacted("METRICS_TOKEN")).pipe(
  Config.map(Option.filter((token) => Redacted.value(token).length > 0))
)

/** Reconnection to the broker: exponential from the initial delay, capped. */
export const BrokerReconnect = Config.all({
  initialDelay: millis("AMQP_RECONNECT_INITIAL_MS", 500),
  maxDelay: millis("AMQP_RECONNECT_MAX_MS", 10_000)
})

export const WorkerConfig = Config.all({
  // Defaults chosen by `npm run bench` (README, Benchmarks).
  prefetch: positiveInt("PREFETCH", 1000),
  batchSize: positiveInt("WORKER_BATCH_SIZE", 500),
  concurrency: positiveInt("WORKER_CONCURRENCY", 2),
  /** `each`: the seed's lines for every event; `auto`: those up to 20 events a batch, one summary line above; `batch`: summaries only; `none`. */
  logEvents: Config.literal("auto", "each", "batch", "none")("LOG_EVENTS").pipe(Config.withDefault("auto" as const)),
  maxRetries: nonNegativeInt("MAX_RETRIES", 3),
  retryInitialDelay: millis("RETRY_INITIAL_DELAY_MS", 1000),
  retryMaxDelay: millis("RETRY_MAX_DELAY_MS", 30_000),
  immediateRetries: nonNegativeInt("IMMEDIATE_RETRIES", 2),
  immediateRetryDelay: millis("IMMEDIATE_RETRY_DELAY_MS", 50),
  metricsInterval: millis("METRICS_INTERVAL_MS", 30_000),
  shutdownTimeout: millis("SHUTDOWN_TIMEOUT_MS", 10_000),
  processorName: Config.string("PROCESSOR_NAME").pipe(Config.withDefault("worker"))
}).pipe(
  Config.validate({
    message: "RETRY_MAX_DELAY_MS must be >= RETRY_INITIAL_DELAY_MS",
    validation: (c) => Duration.greaterThanOrEqualTo(c.retryMaxDelay, c.retryInitialDelay)
  })
)
export type WorkerConfig = Config.Config.Success<typeof WorkerConfig>

/**
 * Fault injection (src/Worker/Faults.ts), off by default: the event types
 * that always fail, and the percentage of events that fail their first try.
 */
export const WorkerFaultsConfig = Config.all({
  events: Config.array(Config.string(), "WORKER_FAULT_EVENTS").pipe(Config.withDefault([])),
  firstAttemptPercent: Config.number("WORKER_FAULT_FIRST_ATTEMPT_PERCENT").pipe(
    Config.withDefault(0),
    Config.validate({ message: "must be between 0 and 100", validation: (p) => p >= 0 && p <= 100 })
  )
})

/** The worker's Prometheus endpoint (`GET /metrics`); 0 turns it off. */
export const WorkerMetricsPort = Config.integer("WORKER_METRICS_PORT").pipe(
  Config.withDefault(9464),
  Config.validate({
    message: "WORKER_METRICS_PORT must be a port number (0 = off)",
    validation: (n) => n >= 0 && n < 65536
  })
)

/** The interface the worker's metrics endpoint listens on: loopback unless told otherwise. */
export const WorkerMetricsHost = Config.string("WORKER_METRICS_HOST").pipe(Config.withDefault("127.0.0.1"))

/** Where the ops dashboard scrapes the worker's counters. */
export const WorkerMetricsUrl = Config.string("WORKER_METRICS_URL").pipe(
  Config.withDefault("http://127.0.0.1:9464/metrics")
)

export const OutboxConfig = Config.all({
  batchSize: positiveInt("OUTBOX_BATCH_SIZE", 1000),
  pollInterval: millis("OUTBOX_POLL_INTERVAL_MS", 1000),
  /** How long an event the broker returned as unroutable waits before the relay tries it again. */
  unroutableRetry: millis("OUTBOX_UNROUTABLE_RETRY_MS", 5000)
})

/** Whether the API process runs the outbox relay (`OUTBOX_RELAY=off`: another process publishes). */
export const OutboxRelayEnabled = Config.boolean("OUTBOX_RELAY").pipe(Config.withDefault(true))
export type OutboxConfig = Config.Config.Success<typeof OutboxConfig>

/** The fewest bytes a JWT secret may have (RFC 7518: an HS256 key has at least the hash's 256 bits). */
export const MIN_JWT_SECRET_BYTES = 32

/**
 * Secrets that were ever published with OpsDesk (its code, compose file,
 * documentation, tests or scripts): anyone can sign tokens with them, so they
 * are refused whatever their length. test/security/secret.test.ts fails when
 * the repository assigns JWT_SECRET a long value that is not refused.
 */
export const PUBLIC_JWT_SECRETS: ReadonlyArray<string> = [
  "opsdesk-development-secret-do-not-use-in-production",
  "change-me-in-production-please-32chars"
]

/** Why `value` cannot be the secret named `name` (one line, with the fix), or undefined when it can. */
export const jwtSecretProblem = (name: string, value: string): string | undefined => {
  const trimmed = value.trim()
  const bytes = Buffer.byteLength(trimmed, "utf8")
  const fix = `set it to at least ${MIN_JWT_SECRET_BYTES} random bytes (\`openssl rand -hex 32\`)${
    name === "JWT_SECRET" ? ", or unset it to have the API generate one and keep it in the database" : ""
  }`
  if (PUBLIC_JWT_SECRETS.includes(trimmed)) {
    return `${name} is a value published with OpsDesk, so anyone can sign tokens with it: ${fix}`
  }
  if (bytes < MIN_JWT_SECRET_BYTES) {
    return `${name} is ${bytes} bytes long, shorter than ${MIN_JWT_SECRET_BYTES}: ${fix}`
  }
  return undefined
}

/** An optional secret: unset or blank is None (compose passes `${JWT_SECRET:-}` as an empty string). */
const jwtSecret = (name: string) =>
  Config.option(Config.string(name)).pipe(
    Config.mapOrFail((value) => {
      if (Option.isNone(value) || value.value.trim() === "") return Either.right(Option.none<Redacted.Redacted>())
      const problem = jwtSecretProblem(name, value.value)
      return problem === undefined
        ? Either.right(Option.some(Redacted.make(value.value)))
        : Either.left(ConfigError.InvalidData([name], problem))
    })
  )

/**
 * The HS256 secrets. `secret` (JWT_SECRET) signs and verifies; when it is
 * unset the API generates one and keeps it in the database
 * (src/Auth/Secret.ts). `previous` (JWT_SECRET_PREVIOUS) only verifies,
 * while tokens signed before a rotation are still alive. A short or published
 * value of either is refused at start-up, in every environment.
 */
export const JwtConfig = Config.all({
  secret: jwtSecret("JWT_SECRET"),
  previous: jwtSecret("JWT_SECRET_PREVIOUS"),
  expiresInSeconds: positiveInt("JWT_EXPIRES_IN_SECONDS", 3600),
  /** Longest `exp - iat` a token may have to be accepted, whoever signed it. */
  maxLifetimeSeconds: positiveInt("JWT_MAX_LIFETIME_SECONDS", 86_400)
}).pipe(
  Config.validate({
    message: "JWT_EXPIRES_IN_SECONDS must be <= JWT_MAX_LIFETIME_SECONDS",
    validation: (c) => c.expiresInSeconds <= c.maxLifetimeSeconds
  }),
  Config.validate({
    message: "JWT_SECRET_PREVIOUS equals JWT_SECRET: set it to the secret used before the rotation, or unset it",
    validation: (c) =>
      Option.isNone(c.secret) || Option.isNone(c.previous) ||
      Redacted.value(c.secret.value) !== Redacted.value(c.previous.value)
  })
)

/**
 * The in-process cache of user rows behind every authenticated request
 * (src/Auth/Identity.ts): a change made through another API instance is seen
 * here at most `ttl` later (0: no cache, every request reads the database);
 * at most `capacity` users are kept.
 */
export const AuthUserCacheConfig = Config.all({
  ttl: nonNegativeInt("AUTH_USER_CACHE_MS", 1000).pipe(Config.map(Duration.millis)),
  capacity: positiveInt("AUTH_USER_CACHE_MAX", 10_000)
})

/** The admin account `ensureAdmin` creates when it is missing. */
export const AdminCredentials = Config.all({
  username: Config.string("ADMIN_USERNAME").pipe(Config.withDefault("admin")),
  password: Config.redacted(Config.string("ADMIN_PASSWORD").pipe(Config.withDefault("admin123")))
})

/**
 * Failed-login throttling (src/Auth/LoginThrottle.ts). After `maxFailures`
 * failures for one username from one client address (IPv6: its /64), or
 * `maxFailuresPerIp` from one address for any usernames, within
 * `windowSeconds`, that pair (or address) is answered 429 for
 * `lockoutBaseSeconds`, doubling with each further failure up to
 * `lockoutMaxSeconds`. A username is never locked: once it has
 * `userDelayAfter` recent failures from anywhere, each attempt for it first
 * waits `userDelayBaseMs`, doubling with each further failure up to
 * `userDelayMaxMs`. Counters live in Redis under `keyPrefix`.
 */
export const LoginThrottleConfig = Config.all({
  maxFailures: positiveInt("LOGIN_MAX_FAILURES", 5),
  maxFailuresPerIp: positiveInt("LOGIN_MAX_FAILURES_PER_IP", 50),
  lockoutBaseSeconds: positiveInt("LOGIN_LOCKOUT_BASE_SECONDS", 30),
  lockoutMaxSeconds: positiveInt("LOGIN_LOCKOUT_MAX_SECONDS", 900),
  windowSeconds: positiveInt("LOGIN_FAILURE_WINDOW_SECONDS", 900),
  userDelayAfter: positiveInt("LOGIN_USER_DELAY_AFTER", 5),
  userDelayBaseMs: nonNegativeInt("LOGIN_USER_DELAY_BASE_MS", 250),
  userDelayMaxMs: nonNegativeInt("LOGIN_USER_DELAY_MAX_MS", 2000),
  keyPrefix: Config.string("LOGIN_THROTTLE_PREFIX").pipe(Config.withDefault("opsdesk:login:"))
}).pipe(
  Config.validate({
    message: "LOGIN_LOCKOUT_MAX_SECONDS must be >= LOGIN_LOCKOUT_BASE_SECONDS",
    validation: (c) => c.lockoutMaxSeconds >= c.lockoutBaseSeconds
  }),
  Config.validate({
    message: "LOGIN_USER_DELAY_MAX_MS must be >= LOGIN_USER_DELAY_BASE_MS",
    validation: (c) => c.userDelayMaxMs >= c.userDelayBaseMs
  })
)
export type LoginThrottleConfig = Config.Config.Success<typeof LoginThrottleConfig>

/**
 * Password checks (src/Auth/Password.ts): at most `concurrency` scrypt
 * computations at once (each takes a thread of libuv's pool, 4 by default),
 * and at most `queue` logins waiting for one; beyond that a login is answered
 * 503 at once instead of piling up.
 */
export const PasswordHashConfig = Config.all({
  concurrency: positiveInt("PASSWORD_HASH_CONCURRENCY", Math.min(availableParallelism(), 4)),
  queue: nonNegativeInt("PASSWORD_HASH_QUEUE", 32)
})
export type PasswordHashConfig = Config.Config.Success<typeof PasswordHashConfig>

/**
 * Logging (src/Logging.ts): `LOG_FORMAT` = `pretty`, `json` or `logfmt`;
 * `LOG_LEVEL` the minimum level (`warning` and `none` read as Warn and Off).
 */
export const LoggingConfig = Config.all({
  format: Config.literal("pretty", "json", "logfmt")("LOG_FORMAT").pipe(Config.withDefault("pretty" as const)),
  level: Config.string("LOG_LEVEL").pipe(
    Config.withDefault("info"),
    Config.mapOrFail((raw) => {
      const wanted = raw.trim().toUpperCase().replace(/^WARNING$/, "WARN").replace(/^NONE$/, "OFF")
      const level = LogLevel.allLevels.find((l) => l.label === wanted)
      return level
        ? Either.right(level)
        : Either.left(
          ConfigError.InvalidData([], `Expected one of trace, debug, info, warn, error, fatal, none; got "${raw}"`)
        )
    })
  )
})

/**
 * OpenTelemetry (src/Observability/Otel.ts): the standard OTEL_* variables it
 * decides on; the OTLP exporter reads the rest of its settings itself.
 */
export const OtelConfig = Config.all({
  disabled: Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  tracesExporter: Config.string("OTEL_TRACES_EXPORTER").pipe(Config.withDefault("")),
  endpoint: Config.option(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  serviceName: Config.option(Config.string("OTEL_SERVICE_NAME"))
})
