-- register's PostgreSQL database, version 2: bind tokens, the same tables as migrations/sqlite/0002_bind_tokens.sql.
--
-- A bind token proves that its redeemer has the issuer's screen or device in hand. Only its
-- SHA-256 hash is stored. `device` is set for a sharing token: a phone bound to that device
-- issued it, and its redeemer is bound to the device. `id` orders an issuer's tokens, so that
-- issuing one more voids the oldest.

CREATE TABLE bind_tokens (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash       BYTEA   NOT NULL UNIQUE,
    issuer     BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device     BIGINT  REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX bind_tokens_issuer ON bind_tokens (issuer, id);
CREATE INDEX bind_tokens_device ON bind_tokens (device) WHERE device IS NOT NULL;
CREATE INDEX bind_tokens_expiry ON bind_tokens (expires_at);

-- One row per failed bind-token redemption, counted per redeeming account over a window.
CREATE TABLE bind_failures (
    account_id BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at         BIGINT  NOT NULL
);
CREATE INDEX bind_failures_account ON bind_failures (account_id, at);
