-- Webhook subscriptions (issue 13; src/Webhooks/).
--
-- An admin subscribes a URL to some of the four event types. The worker's claim
-- statement (src/Worker/EventStore.ts) inserts one `deliveries` row per claimed
-- event and active subscription of its type; the dispatcher sends them through
-- src/Webhooks/Channel.ts, signed with the subscription's secret (Standard Webhooks).

CREATE TABLE webhook_subscriptions (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url                  text NOT NULL CHECK (length(url) <= 2048),
  -- Of the event types in src/Domain/Events.ts (the API checks them).
  event_types          text[] NOT NULL CHECK (cardinality(event_types) > 0),
  description          text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
  active               boolean NOT NULL DEFAULT true,
  -- `whsec_` + base64. Kept readable: signing needs the key itself (docs/SECURITY.md, Webhooks).
  secret               text NOT NULL,
  -- The secret before the last rotation, which still signs (next to the new one) until it expires.
  previous_secret      text,
  previous_expires_at  timestamptz,
  -- Failed attempts in a row (any success resets it); WEBHOOK_DISABLE_AFTER of them disable the subscription.
  consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
  disabled_at          timestamptz,
  disabled_reason      text,
  created_by           uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
-- The admin's listing (keyset on created_at, id).
CREATE INDEX webhook_subscriptions_created_idx ON webhook_subscriptions (created_at DESC, id DESC);
-- The claim statement's lookup: active subscriptions of an event type.
CREATE INDEX webhook_subscriptions_active_types_idx ON webhook_subscriptions USING gin (event_types) WHERE active;

-- A deleted subscription's deliveries stay (the dispatcher fails a pending one with the reason; the books
-- of delivered ones remain), no longer tied to it.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_subscription_fk
  FOREIGN KEY (subscription_id) REFERENCES webhook_subscriptions (id) ON DELETE SET NULL;
