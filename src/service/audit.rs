//! The audit trail: who did what, from which client network, with which result — one record in
//! the database (`register audit`) and one log line under the target `register::audit` per event,
//! so the lines can be shipped apart from the rest of the log.
//!
//! Most events are recorded where the endpoint table dispatches (the endpoint's audit action, the
//! `user_name` sent, the peers named, the result code); the rest where only the code sees them
//! (a login refused by the lock-out, admin commands). A record holds user names and words, never a
//! password, token or `jid_pwd`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::app::{App, Call};
use crate::store::audit::{AuditRecord, AuditStore};

/// The log target of audit lines.
pub const TARGET: &str = "register::audit";

/// Where audit records go.
#[derive(Clone)]
pub struct Audit(pub Arc<dyn AuditStore>);

impl Audit {
    /// Record an event: a log line at info under [`TARGET`], and a row. A row that cannot be
    /// written is logged at error; the request it describes is not failed for it.
    pub async fn record(&self, r: AuditRecord) {
        tracing::info!(
            target: TARGET,
            at = r.at,
            actor = %r.actor,
            action = %r.action,
            subject = %r.subject,
            network = %r.network,
            result = r.result,
            detail = %r.detail,
            "audit"
        );
        if let Err(e) = self.0.audit_append(r).await {
            tracing::error!(target: TARGET, error = %e, "audit record not written");
        }
    }
}

/// The client network of `ip`, as the rate limits and the lock-out group it.
pub fn network(app: &App, ip: IpAddr) -> String {
    app.limiter.network(ip).to_string()
}

/// The most names a record keeps from a request's `user_name_ls` (a bind or unbind names at most
/// `binding` caps of peers; a longer list is a client's, not an event's).
const MAX_SUBJECT_NAMES: usize = 16;

/// The user names in a `user_name_ls` parameter (a JSON array or a comma list), comma-separated,
/// at most [`MAX_SUBJECT_NAMES`] (then `…`); anything else in it is dropped.
pub fn names_of(list: &str) -> String {
    let names: Vec<String> = match serde_json::from_str::<Vec<String>>(list) {
        Ok(v) => v,
        Err(_) => list.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    let mut kept: Vec<String> = names
        .into_iter()
        .filter(|n| crate::types::UserName::parse(n).is_ok())
        .take(MAX_SUBJECT_NAMES + 1)
        .collect();
    if kept.len() > MAX_SUBJECT_NAMES {
        kept[MAX_SUBJECT_NAMES] = "…".into();
    }
    kept.join(",")
}

/// The record of a request answered through the endpoint table; `done` says what a success did.
pub fn of_request(app: &App, action: &str, call: &Call, result: i64, done: &str) -> AuditRecord {
    let actor = call
        .get("user_name")
        .filter(|n| crate::types::UserName::parse(n).is_ok())
        .unwrap_or("")
        .to_owned();
    let redeems = call.get("bind_token").is_some_and(|t| !t.is_empty());
    let detail = match (redeems, result) {
        (true, 0) => "bind token redeemed",
        (true, _) => "bind token not redeemed",
        (false, 0) => done,
        (false, _) => "",
    }
    .to_owned();
    AuditRecord {
        at: app.now(),
        actor,
        action: action.to_owned(),
        // Only the pair endpoints name peers; elsewhere the parameter is not the event's.
        subject: match action {
            "bind" | "unbind" => call.get("user_name_ls").map(names_of).unwrap_or_default(),
            _ => String::new(),
        },
        network: network(app, call.client_ip),
        result,
        detail,
    }
}

/// The record of an admin command (`register user delete`, `register token revoke`, …).
pub fn of_admin(
    app: &App,
    action: &str,
    subject: &str,
    result: i64,
    detail: String,
) -> AuditRecord {
    of_admin_at(app.now(), action, subject, result, detail)
}

/// [`of_admin`] at `at`, for an admin command that runs without an [`App`] (one that needs only
/// the database, so that it never opens a component link).
pub fn of_admin_at(
    at: i64,
    action: &str,
    subject: &str,
    result: i64,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        at,
        actor: "admin".into(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        network: "cli".into(),
        result,
        detail,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_kept_and_anything_else_dropped() {
        assert_eq!(super::names_of(r#"["ann","bob"]"#), "ann,bob");
        assert_eq!(super::names_of("ann, bob"), "ann,bob");
        assert_eq!(super::names_of(r#"["ann", "a b c \n"]"#), "ann");
        let many = vec!["n"; 10_000].join(",");
        let kept = super::names_of(&many);
        assert_eq!(kept.split(',').count(), super::MAX_SUBJECT_NAMES + 1);
        assert!(kept.ends_with(",…"));
    }
}
