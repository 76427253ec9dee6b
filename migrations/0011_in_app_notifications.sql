-- In-app notifications (issue 13; src/Notifications/InApp.ts, Stream.ts).
--
-- A recipient reads their own `in_app` rows, newest first (keyset on id), marks
-- them read, and follows new ones live over Server-Sent Events.

-- When the recipient marked it read; NULL: unread.
ALTER TABLE notifications ADD COLUMN read_at timestamptz;

-- The listing, the stream's replay and the "mark all read" walk a recipient's in-app rows by id.
CREATE INDEX notifications_in_app_idx ON notifications (recipient_id, id DESC) WHERE channel = 'in_app';
-- The unread count and the `unread=true` listing: small, since read rows leave it.
CREATE INDEX notifications_in_app_unread_idx ON notifications (recipient_id, id DESC)
  WHERE channel = 'in_app' AND read_at IS NULL;

-- The live feed: at commit, one NOTIFY per recipient per inserting statement
-- (the worker's claim inserts a batch's rows in one statement), payload
-- `<recipient uuid>:<lowest id>:<highest id>` of that recipient's new in-app
-- rows. The API's single LISTEN (opsdesk_in_app) fans it out to the streams,
-- which read the rows themselves: the payload is only where to look.
CREATE FUNCTION notifications_in_app_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('opsdesk_in_app', r.recipient_id::text || ':' || r.lo::text || ':' || r.hi::text)
  FROM (
    SELECT recipient_id, min(id) AS lo, max(id) AS hi FROM new_rows WHERE channel = 'in_app' GROUP BY recipient_id
  ) r;
  RETURN NULL;
END
$$;
CREATE TRIGGER notifications_in_app_notify AFTER INSERT ON notifications
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notifications_in_app_notify();
