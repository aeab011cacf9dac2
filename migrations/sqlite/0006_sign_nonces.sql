-- Version 6: nonces of version 2 signatures (param_sign), each kept until its timestamp has left
-- the window (expires_at), so that a captured request cannot be sent again; and the XMPP password
-- being set by /renew_jid_pwd (sealed like jid_pwd), kept until the XMPP server has it and it
-- replaces jid_pwd, so that a crash in between leaves a password the service still knows.
CREATE TABLE sign_nonces (
    nonce      TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sign_nonces_expiry ON sign_nonces (expires_at);
ALTER TABLE accounts ADD COLUMN jid_pwd_pending BLOB;
-- Interrupted renewals, found by the reconciler without reading every account.
CREATE INDEX accounts_jid_pwd_pending ON accounts (updated_at) WHERE jid_pwd_pending IS NOT NULL;
