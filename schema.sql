-- register's database, version 1. Applied by src/store/sqlite.rs when PRAGMA user_version < 1;
-- later versions add numbered steps there and never edit this one.
--
-- Secrets are never stored in the clear: password_hash is an Argon2id PHC string, jid_pwd is
-- sealed with ChaCha20-Poly1305 (key outside the database), tokens are SHA-256 hashes.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    user_name     TEXT    NOT NULL UNIQUE,
    type          INTEGER NOT NULL CHECK (type IN (1, 2, 3)),
    device_type   TEXT,
    des           TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL,
    jid_node      TEXT    NOT NULL UNIQUE,
    jid_pwd       BLOB    NOT NULL,
    -- pending: JID being created; active: usable; deleting: cancel under way (see ARCHITECTURE.md)
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'deleting')),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX accounts_state ON accounts (state, updated_at) WHERE state <> 'active';

CREATE TABLE tokens (
    hash       BLOB    PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_account ON tokens (account_id);
CREATE INDEX tokens_expiry ON tokens (expires_at);

-- One row per bound pair, a < b. binding/unbinding: the XMPP side is being changed.
CREATE TABLE bindings (
    a          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    b          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL CHECK (state IN ('binding', 'bound', 'unbinding')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (a, b),
    CHECK (a < b)
) WITHOUT ROWID;
CREATE INDEX bindings_b ON bindings (b);

CREATE TABLE captchas (
    id         TEXT    PRIMARY KEY,
    answer     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX captchas_expiry ON captchas (expires_at);

-- Later steps: migrations/sqlite/ (0002 bind tokens, 0003 tokens.seq, 0004 login_failures).
