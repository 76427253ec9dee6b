-- Retention (src/Retention/): each table's old rows are removed in small
-- batches, oldest first, so each delete needs an index on the time it is
-- kept by. Only published outbox rows are ever removed, so that index holds
-- only them (an unpublished row gets its entry when the relay marks it).
--
-- These run inside the migration's transaction, so they block writes to the
-- table while they are built. On a large existing database, build them first
-- with CREATE INDEX CONCURRENTLY and the same names (docs/OPS.md, Retention):
-- IF NOT EXISTS then skips them here.
CREATE INDEX IF NOT EXISTS outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS processed_events_processed_at_idx ON processed_events (processed_at);
CREATE INDEX IF NOT EXISTS notifications_created_at_idx ON notifications (created_at);
CREATE INDEX IF NOT EXISTS audit_log_created_at_idx ON audit_log (created_at);
