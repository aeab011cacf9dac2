-- register's PostgreSQL database, version 1: the same tables, columns and constraints as schema.sql
-- (keep the two in step: a change to one is a new numbered step for both). Applied by
-- src/store/postgres.rs inside one transaction holding an advisory lock, which also records the
-- version in schema_version; later versions add numbered steps there and never edit this one.
--
-- Types: ids and Unix times are BIGINT (SQLite's INTEGER is 64-bit), small enumerations and
-- counters INTEGER, blobs BYTEA. Secrets are never stored in the clear: password_hash is an
-- Argon2id PHC string, jid_pwd is sealed with ChaCha20-Poly1305 (key outside the database),
-- tokens are SHA-256 hashes.

CREATE TABLE accounts (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name     TEXT    NOT NULL UNIQUE,
    type          INTEGER NOT NULL CHECK (type IN (1, 2, 3)),
    device_type   TEXT,
    des           TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL,
    jid_node      TEXT    NOT NULL UNIQUE,
    jid_pwd       BYTEA   NOT NULL,
    -- pending: JID being created; active: usable; deleting: cancel under way (see ARCHITECTURE.md)
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'deleting')),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX accounts_state ON accounts (state, updated_at) WHERE state <> 'active';

CREATE TABLE tokens (
    hash       BYTEA   PRIMARY KEY,
    account_id BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX tokens_account ON tokens (account_id);
CREATE INDEX tokens_expiry ON tokens (expires_at);

-- One row per bound pair, a < b. binding/unbinding: the XMPP side is being changed.
CREATE TABLE bindings (
    a          BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    b          BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL CHECK (state IN ('binding', 'bound', 'unbinding')),
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (a, b),
    CHECK (a < b)
);
CREATE INDEX bindings_b ON bindings (b);

CREATE TABLE captchas (
    id         TEXT    PRIMARY KEY,
    answer     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX captchas_expiry ON captchas (expires_at);

-- Later steps: migrations/postgres/ (0002 bind tokens, 0003 tokens.seq, 0004 login_failures).
