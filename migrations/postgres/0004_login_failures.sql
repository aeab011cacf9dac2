-- Version 4: failed logins per account and client network, so that a stranger's guesses lock the
-- stranger's network out, not the owner's. accounts.failed_logins / locked_until stay as the
-- account-wide last line (security.lockout_account_threshold).
CREATE TABLE login_failures (
    account_id   BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    network      TEXT    NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (account_id, network)
);
CREATE INDEX login_failures_updated ON login_failures (updated_at);
