-- Event integrity (src/Worker/EventStore.ts, src/Outbox/Relay.ts).
--
-- A claim keeps the fingerprint of what it claimed (sha256 hex of the canonical
-- JSON of the event's name and payload), so a reused event id with another
-- payload is told apart from a copy. Claims made before this have none, and
-- any copy of them counts as a duplicate, as before.
ALTER TABLE processed_events ADD COLUMN fingerprint text;

-- Event ids are claimed in lower case: the letter case of an id cannot make a
-- second claim. NOT VALID: rows written before are not rechecked.
ALTER TABLE processed_events
  ADD CONSTRAINT processed_events_event_id_canonical CHECK (event_id = lower(event_id)) NOT VALID;

-- An outbox row the broker returned as unroutable (no queue bound to its
-- routing key) stays unpublished, with the reason in last_error, and is tried
-- again from retry_at on; rows never returned have none. The relay reads the
-- rows due now from this index, and the new ones (retry_at NULL) first in it,
-- so a pile of unroutable rows is never scanned to find the new ones.
ALTER TABLE outbox ADD COLUMN retry_at timestamptz;
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (retry_at NULLS FIRST, id) WHERE published_at IS NULL;
