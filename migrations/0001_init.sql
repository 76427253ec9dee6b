-- OpsDesk schema. gen_random_uuid() is built into PostgreSQL 13+.

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username      text NOT NULL,
  password_hash text NOT NULL,
  role          text NOT NULL CHECK (role IN ('admin', 'agent', 'customer')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_username_unique UNIQUE (username)
);

CREATE TABLE tickets (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  title       text NOT NULL,
  description text NOT NULL,
  status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
  priority    text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
  owner_id    uuid NOT NULL REFERENCES users (id),
  assignee_id uuid REFERENCES users (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination walks (created_at DESC, id DESC), overall and per owner.
CREATE INDEX tickets_created_idx ON tickets (created_at DESC, id DESC);
CREATE INDEX tickets_owner_created_idx ON tickets (owner_id, created_at DESC, id DESC);
CREATE INDEX tickets_assignee_idx ON tickets (assignee_id) WHERE assignee_id IS NOT NULL;

CREATE TABLE messages (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  ticket_id  uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
  author_id  uuid NOT NULL REFERENCES users (id),
  content    text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_ticket_created_idx ON messages (ticket_id, created_at, id);

CREATE TABLE audit_log (
  id         bigserial PRIMARY KEY,
  actor_id   uuid,
  action     text NOT NULL,
  entity     text NOT NULL,
  entity_id  text NOT NULL,
  changes    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id);

-- Transactional outbox: written in the same transaction as the domain change,
-- published by the relay, marked only after the broker confirms.
CREATE TABLE outbox (
  id           bigserial PRIMARY KEY,
  event_id     uuid NOT NULL,
  event_type   text NOT NULL,
  envelope     jsonb NOT NULL,
  headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text,
  CONSTRAINT outbox_event_id_unique UNIQUE (event_id)
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Idempotency: one row per (event, processor), claimed in the same transaction
-- as the handler's database effects.
CREATE TABLE processed_events (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id       text NOT NULL,
  event_type     text NOT NULL,
  processed_at   timestamptz NOT NULL DEFAULT now(),
  processor_name text NOT NULL,
  CONSTRAINT processed_events_event_processor_unique UNIQUE (event_id, processor_name)
);

-- Fake notifications. Deliberately no unique key: exactly-once must come from
-- the idempotency claim, and the books (tests, chaos) count rows to prove it.
CREATE TABLE notifications (
  id           bigserial PRIMARY KEY,
  event_id     text NOT NULL,
  event_type   text NOT NULL,
  recipient_id uuid NOT NULL,
  channel      text NOT NULL,
  body         text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_event_idx ON notifications (event_id);
CREATE INDEX notifications_recipient_idx ON notifications (recipient_id, created_at DESC);
