-- Identity per request (src/Auth/Identity.ts): a user can be deactivated, and
-- every token carries the user's token_version, which is bumped by logout,
-- password changes, role changes, deactivation and reactivation, so that all
-- older tokens stop working at once. Existing rows become active users at
-- version 0.

ALTER TABLE users
  ADD COLUMN active        boolean NOT NULL DEFAULT true,
  ADD COLUMN token_version integer NOT NULL DEFAULT 0 CHECK (token_version >= 0),
  ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();

-- The admin listing walks (created_at DESC, id DESC).
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC);
-- The last-active-admin check locks these rows.
CREATE INDEX users_active_admins_idx ON users (id) WHERE role = 'admin' AND active;
