-- The worker registry (src/Worker/Registry.ts): one row per worker process,
-- written at start and on every heartbeat with the counters the ops dashboard
-- shows, so /ops/api and the dashboard can sum every worker instead of
-- scraping one. A row whose last_seen is older than WORKER_REGISTRY_TTL_MS is
-- ignored (a worker that died without a goodbye), and removed by the live
-- workers' heartbeats once it is ten times that old.
CREATE TABLE workers (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  -- Set when the worker stopped gracefully: it is no longer live, whatever last_seen says.
  stopped_at timestamptz,
  processed bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  retried bigint NOT NULL DEFAULT 0,
  duplicates bigint NOT NULL DEFAULT 0,
  poison bigint NOT NULL DEFAULT 0,
  -- Per event type: the counters above plus the processing time and lag sums and counts (averages are sums / counts).
  events jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX workers_last_seen_idx ON workers (last_seen);
