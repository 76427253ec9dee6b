-- Notification delivery (issue 13; src/Notifications/).
--
-- The worker's claim statement (src/Worker/EventStore.ts) writes the intent:
-- notification rows, and one `deliveries` row per email (and, from
-- src/Webhooks/, per webhook) with an idempotency key, in the same statement as
-- the claim. The dispatcher (src/Notifications/Dispatcher.ts) delivers them at
-- least once and records every attempt.

-- A user's address for email notifications; NULL: no email is sent to them.
-- Loosely checked (one @, no spaces or angle brackets): the SMTP server is the judge.
ALTER TABLE users ADD COLUMN email text
  CONSTRAINT users_email_shape CHECK (email ~ '^[^@\s<>]+@[^@\s<>]+$' AND length(email) <= 254);

-- Per-user channel preferences. No row: every channel on.
CREATE TABLE user_preferences (
  user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  email      boolean NOT NULL DEFAULT true,
  in_app     boolean NOT NULL DEFAULT true,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Mentions (`@username`) are resolved at claim time: an index on the name exists (users_username_unique).

CREATE TABLE deliveries (
  id              bigserial PRIMARY KEY,
  -- sha256 hex of event_id|channel|recipient-or-subscription: a second insert of the same intent is a no-op,
  -- and the receiver can drop a resend (the email's Message-ID, the webhook-id).
  idempotency_key text NOT NULL CONSTRAINT deliveries_idempotency_key_unique UNIQUE,
  channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
  event_id        text NOT NULL,
  event_type      text NOT NULL,
  -- The email's notification row: the delivery goes with it (retention, tests' clean-up).
  notification_id bigint REFERENCES notifications (id) ON DELETE CASCADE,
  recipient_id    uuid,
  subscription_id uuid,
  payload         json NOT NULL,
  state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  -- Tries made (every one is in delivery_attempt_log), and claims made (tier-2 rounds: the backoff index).
  attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  rounds          integer NOT NULL DEFAULT 0 CHECK (rounds >= 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- A dispatcher's lease: set by the claim, cleared by the recorded outcome. Past: the claimer died, due again.
  locked_until    timestamptz,
  last_error      text,
  last_status     integer,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz
);
-- The claim reads the due rows of one channel in this order.
CREATE INDEX deliveries_due_idx ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_failed_idx ON deliveries (updated_at DESC, id DESC) WHERE state = 'failed';
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
CREATE INDEX deliveries_notification_idx ON deliveries (notification_id) WHERE notification_id IS NOT NULL;
CREATE INDEX deliveries_subscription_idx ON deliveries (subscription_id, created_at DESC) WHERE subscription_id IS NOT NULL;
CREATE INDEX deliveries_created_idx ON deliveries (created_at);

-- Every try of a delivery. (`delivery_attempts` is taken by migration 0007, the worker's crash-loop counter.)
CREATE TABLE delivery_attempt_log (
  id           bigserial PRIMARY KEY,
  delivery_id  bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempted_at timestamptz NOT NULL DEFAULT now(),
  outcome      text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
  status       integer,
  error        text,
  duration_ms  integer NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX delivery_attempt_log_delivery_idx ON delivery_attempt_log (delivery_id, attempted_at);

-- Wakes the dispatchers (LISTEN opsdesk_deliveries) when a statement inserted due deliveries; NOTIFY is sent at
-- commit and coalesced per transaction. Statement-level, so one commit of 500 events is one notification.
CREATE FUNCTION deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM new_rows WHERE state = 'pending') THEN
    PERFORM pg_notify('opsdesk_deliveries', '');
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify();
