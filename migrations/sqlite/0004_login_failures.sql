-- Version 4: failed logins per account and client network, so that a stranger's guesses lock the
-- stranger's network out, not the owner's. accounts.failed_logins / locked_until stay as the
-- account-wide last line (security.lockout_account_threshold).
CREATE TABLE login_failures (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    network      TEXT    NOT NULL,   -- the client's IPv4 address or IPv6 prefix
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, network)
) WITHOUT ROWID;
CREATE INDEX login_failures_updated ON login_failures (updated_at);
