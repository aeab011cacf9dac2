-- register's database, version 2 (SQLite): bind tokens. Applied by src/store/sqlite.rs when
-- PRAGMA user_version < 2; migrations/postgres/0002_bind_tokens.sql is the same step for PostgreSQL.
--
-- A bind token proves that its redeemer has the issuer's screen or device in hand. Only its
-- SHA-256 hash is stored. `device` is set for a sharing token: a phone bound to that device
-- issued it, and its redeemer is bound to the device. `id` orders an issuer's tokens, so that
-- issuing one more voids the oldest.

CREATE TABLE bind_tokens (
    id         INTEGER PRIMARY KEY,
    hash       BLOB    NOT NULL UNIQUE,
    issuer     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device     INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bind_tokens_issuer ON bind_tokens (issuer, id);
CREATE INDEX bind_tokens_device ON bind_tokens (device) WHERE device IS NOT NULL;
CREATE INDEX bind_tokens_expiry ON bind_tokens (expires_at);

-- One row per failed bind-token redemption, counted per redeeming account over a window.
CREATE TABLE bind_failures (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL
);
CREATE INDEX bind_failures_account ON bind_failures (account_id, at);
