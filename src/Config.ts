/**
 * Every setting OpsDesk reads, in one place. Each value comes from the
 * environment through Effect `Config`, with a localhost default, so a bad
 * value fails start-up with a ConfigError naming the variable.
 */
import { Config, ConfigError, Duration, Either, LogLevel } from "effect"

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
export const QueueType = Config.literal("classic", "quorum")("QUEUE_TYPE").pipe(Config.withDefault("classic" as const))

export const HttpPort = Config.port("PORT").pipe(Config.withDefault(3000))

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

/** Where the ops dashboard scrapes the worker's counters. */
export const WorkerMetricsUrl = Config.string("WORKER_METRICS_URL").pipe(
  Config.withDefault("http://127.0.0.1:9464/metrics")
)

export const OutboxConfig = Config.all({
  batchSize: positiveInt("OUTBOX_BATCH_SIZE", 1000),
  pollInterval: millis("OUTBOX_POLL_INTERVAL_MS", 1000)
})

/** Whether the API process runs the outbox relay (`OUTBOX_RELAY=off`: another process publishes). */
export const OutboxRelayEnabled = Config.boolean("OUTBOX_RELAY").pipe(Config.withDefault(true))
export type OutboxConfig = Config.Config.Success<typeof OutboxConfig>

/** `NODE_ENV`; only `production` turns on the strict start-up checks (JWT secret). */
export const NodeEnv = Config.string("NODE_ENV").pipe(Config.withDefault("development"))

/** The development-only JWT secret; start-up refuses it when NODE_ENV=production. */
export const DEFAULT_JWT_SECRET = "opsdesk-development-secret-do-not-use-in-production"

export const JwtConfig = Config.all({
  secret: Config.option(Config.redacted("JWT_SECRET")),
  expiresInSeconds: positiveInt("JWT_EXPIRES_IN_SECONDS", 3600)
})

/** The admin account `ensureAdmin` creates when it is missing. */
export const AdminCredentials = Config.all({
  username: Config.string("ADMIN_USERNAME").pipe(Config.withDefault("admin")),
  password: Config.redacted(Config.string("ADMIN_PASSWORD").pipe(Config.withDefault("admin123")))
})

/**
 * Failed-login throttling (src/Auth/LoginThrottle.ts). After `maxFailures`
 * failures for one username (or `maxFailuresPerIp` from one client address)
 * within `windowSeconds`, logins for it answer 429 for `lockoutBaseSeconds`,
 * doubling with each further failure up to `lockoutMaxSeconds`. Counters live
 * in Redis under `keyPrefix`.
 */
export const LoginThrottleConfig = Config.all({
  maxFailures: positiveInt("LOGIN_MAX_FAILURES", 5),
  maxFailuresPerIp: positiveInt("LOGIN_MAX_FAILURES_PER_IP", 50),
  lockoutBaseSeconds: positiveInt("LOGIN_LOCKOUT_BASE_SECONDS", 30),
  lockoutMaxSeconds: positiveInt("LOGIN_LOCKOUT_MAX_SECONDS", 900),
  windowSeconds: positiveInt("LOGIN_FAILURE_WINDOW_SECONDS", 900),
  keyPrefix: Config.string("LOGIN_THROTTLE_PREFIX").pipe(Config.withDefault("opsdesk:login:"))
}).pipe(
  Config.validate({
    message: "LOGIN_LOCKOUT_MAX_SECONDS must be >= LOGIN_LOCKOUT_BASE_SECONDS",
    validation: (c) => c.lockoutMaxSeconds >= c.lockoutBaseSeconds
  })
)
export type LoginThrottleConfig = Config.Config.Success<typeof LoginThrottleConfig>

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
