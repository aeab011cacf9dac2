//! XEP-0133 `add-user` / `delete-user` / `change-user-password` / `end-user-session` through the component, as XEP-0050 two-step commands.
//!
//! Step one executes the command and gets a `sessionid` and a form; step two submits the filled
//! `jabber:x:data` form with that `sessionid`. The outcome can be an IQ error (ejabberd, Openfire:
//! `conflict`) or a completed command with a `<note/>` (Prosody: `type='error'` "Account already
//! exists"; a failed delete is only an `info` note naming the accounts that "could not be deleted").
//! Whatever goes wrong after a `sessionid` was handed out, the session is cancelled so none stays
//! open (Openfire allows 100 per requester and never expires one that is not used again; a
//! cancel that cannot be sent is sent after the next link-up). At most `command_sessions` run at
//! once, the others wait in a FIFO queue ([`Link::command_slot`]); an execute refused with
//! `not-allowed` (Openfire's session limit, reached by other instances on the same name or by
//! sessions leaked earlier) is retried with backoff until the timeout. How each server reports
//! outcomes is in `quirks`; the elements themselves are built and read in `command`.

use std::time::{Duration, Instant};

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::command::{
    add_user_form, change_password_form, command, command_iq, delete_user_form, end_sessions_form,
    parse_command, server_jid, CommandReply, ADD_USER, CHANGE_USER_PASSWORD, DELETE_USER,
    END_USER_SESSION,
};
use crate::component::Link;
use crate::quirks::{add_user_outcome, command_error, delete_user_outcome, session_limit_error};
use crate::stanza::reply_payload;
use crate::XmppError;

/// The outcome of a completed `change-user-password`: any `error` note is a refusal (Prosody:
/// "User does not exist" is one), a note naming a missing account is [`XmppError::NotFound`].
pub(crate) fn change_password_outcome(reply: &CommandReply, _jid: &str) -> Result<(), XmppError> {
    for (kind, text) in &reply.notes {
        if kind == "error" {
            let lower = text.to_lowercase();
            if lower.contains("does not exist") || lower.contains("not found") {
                return Err(XmppError::NotFound);
            }
            return Err(XmppError::Refused(text.clone()));
        }
    }
    reply.completed("change-user-password")
}

/// The outcome of a completed `end-user-session`: an `error` note is a refusal, and so is a note
/// saying the account "could not be disconnected" (Prosody's text for a JID it does not serve);
/// ejabberd completes without a note. A user with no session open is success everywhere.
pub(crate) fn end_sessions_outcome(reply: &CommandReply, _jid: &str) -> Result<(), XmppError> {
    for (kind, text) in &reply.notes {
        if kind == "error" || text.to_lowercase().contains("could not") {
            return Err(XmppError::Refused(text.clone()));
        }
    }
    reply.completed("end-user-session")
}

/// The first step, retried while the server answers `not-allowed` (Openfire: this requester
/// has `xmpp.command.limit` sessions open) until the configured timeout has passed.
async fn execute(link: &Link, server: &Jid, node: &str) -> Result<CommandReply, XmppError> {
    let deadline = Instant::now() + link.config().timeout;
    let mut wait = Duration::from_millis(20);
    loop {
        let reply = link
            .iq(command_iq(server, command(node, "execute", None, None)))
            .await?;
        match reply_payload(reply) {
            Ok(p) => return parse_command(p.as_ref()),
            Err(e) if e.defined_condition == DefinedCondition::NotAllowed => {
                if Instant::now() + wait > deadline {
                    return Err(session_limit_error(&e));
                }
                tracing::debug!(
                    node,
                    "command refused with not-allowed (session limit); retrying"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                // Openfire refuses change-user-password to components by design (the caller then
                // changes the password over c2s): not the misconfiguration this reports.
                if e.defined_condition == DefinedCondition::Forbidden
                    && node != CHANGE_USER_PASSWORD
                {
                    link.note_forbidden(&crate::stanza::error_text(&e));
                }
                return Err(command_error(&e));
            }
        }
    }
}

/// Runs one two-step admin command for `jid`; `outcome` judges the completed reply.
async fn run(
    link: &Link,
    node: &str,
    jid: &str,
    form: DataForm,
    outcome: fn(&CommandReply, &str) -> Result<(), XmppError>,
) -> Result<(), XmppError> {
    let server = server_jid(link.config());
    // Held until the session is completed or its cancel is queued.
    let _slot = link.command_slot().await;
    let first = execute(link, &server, node).await?;
    let Some(session) = first.sessionid.clone() else {
        // Completed at once (or refused with a note) without a session to close.
        outcome(&first, jid)?;
        return Err(XmppError::Protocol(
            "command completed without taking the form".into(),
        ));
    };
    let cancel = || link.cancel_command(node, &session);
    if first.status != "executing" || !first.has_form {
        cancel();
        outcome(&first, jid)?;
        return Err(XmppError::Protocol(format!(
            "unexpected command status '{}'",
            first.status
        )));
    }
    let second = link
        .iq(command_iq(
            &server,
            command(node, "complete", Some(&session), Some(form)),
        ))
        .await;
    let second = match second {
        Ok(reply) => reply,
        Err(e) => {
            cancel();
            return Err(e);
        }
    };
    match reply_payload(second) {
        Ok(p) => {
            let reply = parse_command(p.as_ref()).inspect_err(|_| cancel())?;
            if reply.status != "completed" && reply.status != "canceled" {
                cancel();
            }
            outcome(&reply, jid)
        }
        Err(e) => {
            cancel();
            Err(command_error(&e))
        }
    }
}

/// The first step of add-user alone, then a cancel: creates nothing. Openfire checks
/// `AddUser.hasPermission` when the command is requested, so a read-only user store (LDAP/AD,
/// JDBC) answers `forbidden` here, before any form; a server that lets the component add users
/// answers with the form, and the session is cancelled at once (Openfire answers that cancel with
/// `bad-request`, Prosody and ejabberd with `canceled`; nobody waits for it). Run at each
/// link-up and by `register check`.
pub(crate) async fn probe_add_user(link: &Link) -> Result<(), XmppError> {
    let server = server_jid(link.config());
    let _slot = link.command_slot().await;
    let first = execute(link, &server, ADD_USER).await?;
    if let Some(session) = &first.sessionid {
        link.cancel_command(ADD_USER, session);
    }
    if first.status == "executing" && first.has_form {
        return Ok(());
    }
    // No form: a refusal in a note, or something unexpected.
    if let Some((_, text)) = first.notes.iter().find(|(kind, _)| kind == "error") {
        return Err(XmppError::Refused(text.clone()));
    }
    Err(XmppError::Protocol(format!(
        "add-user answered status '{}' without a form",
        first.status
    )))
}

/// XEP-0133 add-user of `jid` with `password`.
pub(crate) async fn add_user(link: &Link, jid: &str, password: &str) -> Result<(), XmppError> {
    run(
        link,
        ADD_USER,
        jid,
        add_user_form(jid, password),
        add_user_outcome,
    )
    .await
}

/// XEP-0133 delete-user of `jid`.
pub(crate) async fn delete_user(link: &Link, jid: &str) -> Result<(), XmppError> {
    run(
        link,
        DELETE_USER,
        jid,
        delete_user_form(jid),
        delete_user_outcome,
    )
    .await
}

/// XEP-0133 change-user-password of `jid` to `password`.
pub(crate) async fn change_user_password(
    link: &Link,
    jid: &str,
    password: &str,
) -> Result<(), XmppError> {
    run(
        link,
        CHANGE_USER_PASSWORD,
        jid,
        change_password_form(jid, password),
        change_password_outcome,
    )
    .await
}

/// XEP-0133 end-user-session of `jid` (a bare JID: every session of the account).
pub(crate) async fn end_user_session(link: &Link, jid: &str) -> Result<(), XmppError> {
    run(
        link,
        END_USER_SESSION,
        jid,
        end_sessions_form(jid),
        end_sessions_outcome,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    #[test]
    fn change_password_form_and_outcomes() {
        let form = change_password_form("a@b", "pw");
        let vars: Vec<_> = form.fields.iter().map(|f| f.var.clone().unwrap()).collect();
        assert_eq!(vars, ["FORM_TYPE", "accountjid", "password"]);
        let done = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='completed' \
             node='x'><note type='info'>Password successfully changed</note></command>",
        );
        assert!(change_password_outcome(&done, "a@b").is_ok());
        let missing = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='completed' \
             node='x'><note type='error'>User does not exist</note></command>",
        );
        assert!(matches!(
            change_password_outcome(&missing, "a@b"),
            Err(XmppError::NotFound)
        ));
    }

    #[test]
    fn end_sessions_form_and_outcomes() {
        let form = end_sessions_form("a@b");
        let vars: Vec<_> = form.fields.iter().map(|f| f.var.clone().unwrap()).collect();
        assert_eq!(vars, ["FORM_TYPE", "accountjids", "accountjid"]);
        assert!(form.fields[1..].iter().all(|f| f.values == ["a@b"]));
        let ejabberd = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='completed' node='x'/>",
        );
        assert!(end_sessions_outcome(&ejabberd, "a@b").is_ok());
        let prosody = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='completed' node='x'>\
             <note type='info'>The following accounts were successfully disconnected:\na@b\n</note></command>",
        );
        assert!(end_sessions_outcome(&prosody, "a@b").is_ok());
        let failed = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='completed' node='x'>\
             <note type='info'>The following accounts could not be disconnected:\na@b</note></command>",
        );
        assert!(matches!(
            end_sessions_outcome(&failed, "a@b"),
            Err(XmppError::Refused(_))
        ));
    }

    fn reply(xml: &str) -> CommandReply {
        let el: Element = xml.parse().unwrap();
        parse_command(Some(&el)).unwrap()
    }
}
