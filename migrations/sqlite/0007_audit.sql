-- Version 7 (issue 20): the audit trail. One row per event: when, who (the user name sent, or
-- "admin"), what, the other user(s) named, the client network, the result code, and a detail that
-- never holds a password, token or jid_pwd. Pruned after audit.retention_days.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    network TEXT NOT NULL DEFAULT '',
    result INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);
