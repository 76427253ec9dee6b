-- Crash-loop detection (src/Worker/CrashCounter.ts).
--
-- A message that takes its whole batch down (a defect in the commit step, a
-- worker killed while processing it) is requeued by the broker, and a classic
-- queue counts no redeliveries. The worker counts them here, keyed by queue and
-- message id (or body hash), written only for deliveries the broker flags as
-- redelivered, so the count survives a worker restart; a message redelivered
-- CRASH_LOOP_LIMIT times goes to the DLQ as `crash-loop`. `last_error` keeps
-- the cause of the last batch failure it was in, for the DLQ reason. A row is
-- removed once its message is settled; rows left behind by a crash are removed
-- after a week (by `updated_at`).
CREATE TABLE delivery_attempts (
  message_key text PRIMARY KEY,
  deliveries integer NOT NULL DEFAULT 0,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_updated_at_idx ON delivery_attempts (updated_at);
