/**
 * Every setting OpsDesk reads, in one place. Each value comes from the
 * environment through Effect `Config`, with a localhost default, so a bad
 * value fails start-up with a ConfigError naming the variable.
 */
import { Config, ConfigError, Duration, Either, LogLevel, Option, Redacted } from "effect"
import ipaddr from "ipaddr.js"
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

/** Defaults that `opsdesk --help` also names (Cli/Help.ts): written once, here. */
export const DEFAULTS = {
  /** docker-compose.yml's database, which `npm run services` also makes without Docker. */
  DATABASE_URL: "postgres://opsdesk:opsdesk@127.0.0.1:5432/opsdesk",
  DATABASE_CONNECT_TIMEOUT_MS: 5000,
  REDIS_URL: "redis://127.0.0.1:6379",
  AMQP_URL: "amqp://guest:guest@127.0.0.1:5672",
  AMQP_RECONNECT_INITIAL_MS: 500,
  AMQP_RECONNECT_MAX_MS: 10_000,
  QUEUE_TYPE: "classic",
  DLQ_REPLAY_WINDOW: Duration.days(7)
} as const

export const DatabaseUrl = Config.redacted(
  Config.string("DATABASE_URL").pipe(Config.withDefault(DEFAULTS.DATABASE_URL))
)
export const DatabasePoolSize = positiveInt("DATABASE_POOL_SIZE", 10)
/** Longest wait for a pooled connection (a new one, or a free one); beyond it a request fails with 503 instead of hanging. */
export const DatabaseConnectTimeout = millis("DATABASE_CONNECT_TIMEOUT_MS", DEFAULTS.DATABASE_CONNECT_TIMEOUT_MS)
/**
 * Whether the statements marked `PREPARED` (Store/Sql.ts) run as named prepared statements, parsed and planned
 * once per connection. Off only behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
 */
export const DatabasePreparedStatements = Config.boolean("DATABASE_PREPARED_STATEMENTS").pipe(
  Config.withDefault(true)
)
/** The pool's `application_name` (as pg_stat_activity shows it): the service's name. */
export const DatabaseApplicationName = Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("opsdesk"))
export const RedisUrl = Config.string("REDIS_URL").pipe(Config.withDefault(DEFAULTS.REDIS_URL))
/**
 * The nodes an AMQP URL setting names: one URL, or a cluster's nodes as a
 * comma-separated list of URLs, tried in turn (src/Broker/Amqp.ts). The list
 * splits only before `amqp://` or `amqps://`, so a single URL (a comma in its
 * password, say) is read exactly as before.
 */
export const amqpNodeUrls = (value: string): ReadonlyArray<string> => {
  const nodes = value.split(/,(?=\s*amqps?:\/\/)/i).map((node) => node.trim())
  return nodes.length > 1 ? nodes : [value]
}

/** A list must hold amqp:// or amqps:// URLs only (a single URL is left to the client, as before); the message shows no URL. */
const validAmqpUrl = (name: string) =>
  Config.validate<Redacted.Redacted<string>>({
    message: `${name}: a comma-separated list of nodes must hold amqp:// or amqps:// URLs only`,
    validation: (url) => {
      const nodes = amqpNodeUrls(Redacted.value(url))
      return nodes.length === 1 || nodes.every((node) => /^amqps?:\/\/[^,]/i.test(node))
    }
  })

export const AmqpUrl = Config.redacted(
  Config.string("AMQP_URL").pipe(Config.withDefault(DEFAULTS.AMQP_URL))
).pipe(validAmqpUrl("AMQP_URL"))
/**
 * The broker URL of the operator tools (the DLQ service behind the ops dashboard and
 * `opsdesk dlq`): OPS_AMQP_URL, else AMQP_URL. The API sets it to the operator's user,
 * so its relay's own user needs no right on the DLQ (docs/SECURITY.md, Broker permissions).
 */
export const OperatorAmqpUrl = Config.redacted("OPS_AMQP_URL").pipe(
  validAmqpUrl("OPS_AMQP_URL"),
  // Only a missing OPS_AMQP_URL falls back: an invalid one fails rather than run the tools as another user.
  Config.orElseIf({ if: ConfigError.isMissingDataOnly, orElse: () => AmqpUrl })
)
export const QueueType = Config.literal("classic", "quorum")("QUEUE_TYPE").pipe(Config.withDefault(DEFAULTS.QUEUE_TYPE))

/** The CLI's colour switches (src/Cli/Output.ts): NO_COLOR non-empty (no-color.org) or TERM=dumb turn colour off. */
export const ColorConfig = Config.all({
  NO_COLOR: Config.string("NO_COLOR").pipe(Config.withDefault("")),
  TERM: Config.string("TERM").pipe(Config.withDefault(""))
})

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

/**
 * Request conventions (App/RequestContext.ts): `ACCESS_LOG` = `off` (default:
 * a proxy in front usually keeps one), `sampled` (every 4xx/5xx, and
 * ACCESS_LOG_SAMPLE of the rest) or `on`; `CORS_ORIGINS`, a comma list of
 * origins browsers may call the API from (`*` for any; empty: no CORS headers,
 * same-origin only).
 */
export const HttpConventionsConfig = Config.all({
  accessLog: Config.literal("off", "sampled", "on")("ACCESS_LOG").pipe(Config.withDefault("off" as const)),
  accessLogSample: Config.number("ACCESS_LOG_SAMPLE").pipe(
    Config.withDefault(0.01),
    Config.validate({ message: "ACCESS_LOG_SAMPLE must be between 0 and 1", validation: (n) => n >= 0 && n <= 1 })
  ),
  corsOrigins: Config.string("CORS_ORIGINS").pipe(
    Config.withDefault(""),
    Config.map((raw) => raw.split(",").map((o) => o.trim().replace(/\/+$/, "")).filter((o) => o.length > 0)),
    Config.validate({
      message: "CORS_ORIGINS must list origins such as https://app.example.com (scheme, host, optional port), or *",
      validation: (origins) => origins.every((o) => o === "*" || /^https?:\/\/[^/\s]+$/.test(o))
    })
  )
})
export type HttpConventionsConfig = Config.Config.Success<typeof HttpConventionsConfig>

/**
 * How long the HTTP front cache (App/FrontCache.ts) keeps an answer, in
 * seconds, at most: it is dropped sooner when what it answers changes. 0 turns
 * the front cache off.
 */
export const FrontCacheTtl = nonNegativeInt("HTTP_FRONT_CACHE_TTL_S", 60)

/** When set (non-empty), `GET /metrics` (the API's and the worker's) answers only `Authorization: Bearer <METRICS_TOKEN>`. */
export const MetricsToken = Config.option(Config.redacted("METRICS_TOKEN")).pipe(
  Config.map(Option.filter((token) => Redacted.value(token).length > 0))
)

/** Reconnection to the broker: exponential from the initial delay, capped. */
export const BrokerReconnect = Config.all({
  initialDelay: millis("AMQP_RECONNECT_INITIAL_MS", DEFAULTS.AMQP_RECONNECT_INITIAL_MS),
  maxDelay: millis("AMQP_RECONNECT_MAX_MS", DEFAULTS.AMQP_RECONNECT_MAX_MS)
})

export const WorkerConfig = Config.all({
  // Defaults chosen by `npm run bench` (README, Benchmarks); PREFETCH 500 so several workers share a backlog
  // (docs/OPS.md, Choosing PREFETCH).
  prefetch: positiveInt("PREFETCH", 500),
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
 * The broker-side delivery limit (`x-delivery-limit`) of the quorum event
 * queues (src/Broker/Topology.ts): RabbitMQ 4's default, so a move from 3.x
 * changes nothing. A queue argument, so fixed here: every process that
 * declares the queues must declare the same value.
 */
export const QUORUM_DELIVERY_LIMIT = 20

/**
 * A message delivered this many times without being settled (each delivery
 * took its batch, or the worker, down) goes to the DLQ as `crash-loop`
 * (src/Worker/Processor.ts). Below QUORUM_DELIVERY_LIMIT, so the worker's
 * verdict, with its reason, comes before the broker's.
 */
export const CrashLoopLimit = positiveInt("CRASH_LOOP_LIMIT", 5).pipe(
  Config.validate({
    message: `CRASH_LOOP_LIMIT must be below ${QUORUM_DELIVERY_LIMIT} (the quorum queues' delivery limit)`,
    validation: (n) => n < QUORUM_DELIVERY_LIMIT
  })
)

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

/** The standalone relay's Prometheus endpoint (`opsdesk relay`, src/App/RelayProcess.ts); 0 turns it off. */
export const RelayMetricsPort = Config.integer("RELAY_METRICS_PORT").pipe(
  Config.withDefault(9465),
  Config.validate({
    message: "RELAY_METRICS_PORT must be a port number (0 = off)",
    validation: (n) => n >= 0 && n < 65536
  })
)

/** The interface the relay's metrics endpoint listens on: loopback unless told otherwise. */
export const RelayMetricsHost = Config.string("RELAY_METRICS_HOST").pipe(Config.withDefault("127.0.0.1"))

/**
 * The worker registry (src/Worker/Registry.ts): each worker writes its row and
 * counters every `heartbeat`; a row not refreshed for `ttl` is no longer
 * counted (the worker died), and is removed once ten times that old.
 */
export const WorkerRegistryConfig = Config.all({
  heartbeat: millis("WORKER_HEARTBEAT_MS", 5000),
  ttl: millis("WORKER_REGISTRY_TTL_MS", 30_000)
}).pipe(
  Config.validate({
    message: "WORKER_REGISTRY_TTL_MS must be at least twice WORKER_HEARTBEAT_MS",
    validation: (c) => Duration.greaterThanOrEqualTo(c.ttl, Duration.times(c.heartbeat, 2))
  })
)
export type WorkerRegistryConfig = Config.Config.Success<typeof WorkerRegistryConfig>

/** Where the ops dashboard scrapes the worker's counters. */
export const WorkerMetricsUrl = Config.string("WORKER_METRICS_URL").pipe(
  Config.withDefault("http://127.0.0.1:9464/metrics")
)

/** How often the ops dashboard's history (its charts' last hour, kept in the API's memory) takes a sample. */
export const OpsHistoryInterval = millis("OPS_HISTORY_INTERVAL_MS", 10_000)

export const OutboxConfig = Config.all({
  batchSize: positiveInt("OUTBOX_BATCH_SIZE", 1000),
  pollInterval: millis("OUTBOX_POLL_INTERVAL_MS", 1000),
  /** How long an event the broker returned as unroutable waits before the relay tries it again. */
  unroutableRetry: millis("OUTBOX_UNROUTABLE_RETRY_MS", 5000)
})

/** Whether the API process runs the outbox relay (`OUTBOX_RELAY=off`: another process publishes). */
export const OutboxRelayEnabled = Config.boolean("OUTBOX_RELAY").pipe(Config.withDefault(true))
export type OutboxConfig = Config.Config.Success<typeof OutboxConfig>

/** A duration such as `7 days`, `90 minutes`, `500 millis` (Effect's Duration syntax), > 0. */
const positiveDuration = (name: string, fallback: Duration.Duration) =>
  Config.duration(name).pipe(
    Config.withDefault(fallback),
    Config.validate({
      message: `${name} must be a duration above zero, e.g. "7 days" or "90 minutes"`,
      validation: (d) => Duration.greaterThan(d, Duration.zero)
    })
  )

/**
 * The longest a message can spend in the broker-held retry queues: the sum of
 * the tier-2 retry delays, min(initial * 2^n, max) for n < MAX_RETRIES (the
 * formula of src/Broker/Topology.ts `retryDelays`; test/retention checks they agree).
 */
export const retryDelaySpan = (
  cfg: Pick<WorkerConfig, "retryInitialDelay" | "retryMaxDelay" | "maxRetries">
): Duration.Duration => {
  let total = Duration.zero
  for (let n = 0; n < cfg.maxRetries; n++) {
    total = Duration.sum(total, Duration.min(Duration.times(cfg.retryInitialDelay, 2 ** n), cfg.retryMaxDelay))
  }
  return total
}

/**
 * Retention (src/Retention/): how long each table keeps its rows, and how the
 * worker (or `opsdesk maintain`) removes older ones: every `interval`, in
 * batches of `batchSize` rows, one short statement each, `batchPause` apart.
 * `processedEvents` is the dedupe window: a copy of an event that arrives
 * after its claim was removed is processed again. `dlqReplayWindow` is how
 * long a dead letter stays replayable without `--force`.
 */
export const RetentionConfig = Config.all({
  enabled: Config.boolean("RETENTION_ENABLED").pipe(Config.withDefault(true)),
  interval: positiveDuration("RETENTION_INTERVAL", Duration.minutes(5)),
  batchSize: positiveInt("RETENTION_BATCH_SIZE", 5000),
  batchPause: Config.duration("RETENTION_BATCH_PAUSE").pipe(Config.withDefault(Duration.millis(50))),
  outbox: positiveDuration("RETENTION_OUTBOX", Duration.days(7)),
  processedEvents: positiveDuration("RETENTION_PROCESSED_EVENTS", Duration.days(14)),
  notifications: positiveDuration("RETENTION_NOTIFICATIONS", Duration.days(30)),
  auditLog: positiveDuration("RETENTION_AUDIT_LOG", Duration.days(365)),
  /** Settled deliveries (and their attempt log), by their last change; a pending one is never removed. */
  deliveries: positiveDuration("RETENTION_DELIVERIES", Duration.days(30)),
  dlqReplayWindow: positiveDuration("DLQ_REPLAY_WINDOW", DEFAULTS.DLQ_REPLAY_WINDOW),
  retryDelaySpan: WorkerConfig.pipe(Config.map(retryDelaySpan))
}).pipe(
  Config.mapOrFail((c) => {
    const problem = retentionProblem(c)
    return problem === undefined ? Either.right(c) : Either.left(ConfigError.InvalidData([], problem))
  })
)
export type RetentionConfig = Config.Config.Success<typeof RetentionConfig>

/**
 * Why these windows would let an event run twice, or undefined when they are
 * safe. A message can come back (a DLQ replay, or a DLQ copy left behind by a
 * replay that crashed after its republish) up to the replay window plus the
 * retry delays after its event was claimed, so the claim must outlive that.
 */
export const retentionProblem = (c: {
  readonly processedEvents: Duration.Duration
  readonly dlqReplayWindow: Duration.Duration
  readonly retryDelaySpan: Duration.Duration
}): string | undefined => {
  const needed = Duration.sum(c.dlqReplayWindow, c.retryDelaySpan)
  return Duration.greaterThan(c.processedEvents, needed)
    ? undefined
    : `RETENTION_PROCESSED_EVENTS (${Duration.format(c.processedEvents)}, the dedupe window) must exceed ` +
      `DLQ_REPLAY_WINDOW (${Duration.format(c.dlqReplayWindow)}) plus the retry delays ` +
      `(${Duration.format(c.retryDelaySpan)}): a dead letter replayed after its claim was removed would be ` +
      `processed twice. Raise RETENTION_PROCESSED_EVENTS or lower DLQ_REPLAY_WINDOW.`
}

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

/**
 * The in-app live feed, `GET /v1/notifications/stream` (src/Notifications/Stream.ts):
 * a comment line every `heartbeat` (proxies and clients see a live connection; the
 * caller's access is checked again at each one), at most `maxPerUser` open streams
 * per user and API process (the next one is answered 429), and how often the
 * process's one LISTEN connection is checked (a dead one is replaced and the
 * streams catch up from the table).
 */
export const NotificationStreamConfig = Config.all({
  heartbeat: millis("NOTIFICATIONS_STREAM_HEARTBEAT_MS", 15_000),
  maxPerUser: positiveInt("NOTIFICATIONS_STREAM_MAX_PER_USER", 5),
  listenCheck: millis("NOTIFICATIONS_LISTEN_CHECK_MS", 10_000)
})
export type NotificationStreamConfig = Config.Config.Success<typeof NotificationStreamConfig>

/**
 * A `WEBHOOK_ALLOW_PRIVATE` entry: a host name (matched as the URL spells it,
 * in lower case) or an IP address or CIDR range (matched against the
 * addresses the host resolves to).
 */
export type WebhookAllowEntry =
  | { readonly _tag: "Host"; readonly host: string }
  | { readonly _tag: "Range"; readonly range: [ipaddr.IPv4 | ipaddr.IPv6, number]; readonly text: string }

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/

/** One entry, or undefined when it is none of a host name, an address, a CIDR range. */
export const parseWebhookAllowEntry = (raw: string): WebhookAllowEntry | undefined => {
  const text = raw.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1")
  if (text === "") return undefined
  // Addresses only in their usual spelling (not `2130706433` or `0x7f.1`), so a typo is an error, not a range.
  const [address = "", bits] = text.split("/")
  const usual = ipaddr.IPv4.isValidFourPartDecimal(address) || ipaddr.IPv6.isValid(address)
  if (bits !== undefined) {
    return usual && ipaddr.isValidCIDR(text) ? { _tag: "Range", range: ipaddr.parseCIDR(text), text } : undefined
  }
  if (usual) {
    const parsed = ipaddr.parse(address)
    return { _tag: "Range", range: [parsed, parsed.kind() === "ipv4" ? 32 : 128], text }
  }
  const host = text.replace(/\.$/, "")
  // A name whose last label is a number is an IPv4 address to URL parsers (WHATWG "ends in a number").
  const numeric = /^(\d+|0x[0-9a-f]*)$/.test(host.slice(host.lastIndexOf(".") + 1))
  return HOST_NAME.test(host) && !numeric ? { _tag: "Host", host } : undefined
}

/**
 * Webhooks (src/Webhooks/): hosts allowed despite plain http or a private,
 * loopback or link-local address (`allowPrivate`, comma-separated host names,
 * addresses and CIDR ranges; empty by default), the longest a delivery may
 * take (connect, send, answer), the run of consecutive failed attempts after
 * which a subscription is disabled, and how long a rotated-out secret still
 * signs (the default of a rotation that names none).
 */
export const WebhookConfig = Config.all({
  allowPrivate: Config.array(Config.string(), "WEBHOOK_ALLOW_PRIVATE").pipe(
    Config.withDefault([]),
    Config.mapOrFail((entries) => {
      const parsed: Array<WebhookAllowEntry> = []
      for (const entry of entries) {
        if (entry.trim() === "") continue
        const allowed = parseWebhookAllowEntry(entry)
        if (allowed === undefined) {
          return Either.left(
            ConfigError.InvalidData(
              [],
              `WEBHOOK_ALLOW_PRIVATE: "${entry}" is not a host name, an IP address or a CIDR range`
            )
          )
        }
        parsed.push(allowed)
      }
      return Either.right(parsed as ReadonlyArray<WebhookAllowEntry>)
    })
  ),
  timeout: millis("WEBHOOK_TIMEOUT_MS", 10_000),
  disableAfter: positiveInt("WEBHOOK_DISABLE_AFTER", 25),
  secretOverlapSeconds: nonNegativeInt("WEBHOOK_SECRET_OVERLAP_SECONDS", 86_400)
})
export type WebhookConfig = Config.Config.Success<typeof WebhookConfig>

/**
 * Email notifications (src/Notifications/Email.ts): the SMTP server as a URL
 * (`smtp://user:pass@host:587`, `smtps://…` for implicit TLS; unset or empty:
 * no mail is sent and each email is logged as the seed's "[FAKE]" line), the
 * From address, and the longest each step may take (connect, greeting, every
 * socket read), so a hung server costs one delivery attempt, not a worker.
 */
export const SmtpConfig = Config.all({
  url: Config.option(Config.redacted("SMTP_URL")).pipe(
    Config.map(Option.filter((url) => Redacted.value(url).trim().length > 0))
  ),
  from: Config.string("SMTP_FROM").pipe(Config.withDefault("OpsDesk <opsdesk@localhost>")),
  timeout: millis("SMTP_TIMEOUT_MS", 10_000)
})
export type SmtpConfig = Config.Config.Success<typeof SmtpConfig>

/**
 * The delivery dispatcher (src/Notifications/Dispatcher.ts): whether the
 * worker runs it, the deliveries in flight per channel (a slow channel holds
 * only its own), per webhook subscription, the poll interval (a backstop for
 * the NOTIFY that wakes it), and the lease on a claimed delivery (it must
 * outlast a send with its quick retries: past it, another dispatcher may take
 * the delivery again). Retries use the worker's MAX_RETRIES, RETRY_* and
 * IMMEDIATE_RETRY* settings.
 */
export const DispatchConfig = Config.all({
  enabled: Config.boolean("DISPATCHER").pipe(Config.withDefault(true)),
  emailConcurrency: positiveInt("DISPATCH_EMAIL_CONCURRENCY", 4),
  webhookConcurrency: positiveInt("DISPATCH_WEBHOOK_CONCURRENCY", 16),
  perSubscription: positiveInt("DISPATCH_PER_SUBSCRIPTION", 2),
  pollInterval: millis("DISPATCH_POLL_INTERVAL_MS", 5000),
  lease: millis("DISPATCH_LEASE_MS", 120_000)
})
export type DispatchConfig = Config.Config.Success<typeof DispatchConfig>
