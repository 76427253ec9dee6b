-- The HS256 secret the API generates when JWT_SECRET is not set (src/Auth/Secret.ts):
-- one row, so every API instance on this database signs and verifies with the same key,
-- and every installation has its own.
CREATE TABLE jwt_secret (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  secret text NOT NULL CHECK (octet_length(secret) >= 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
