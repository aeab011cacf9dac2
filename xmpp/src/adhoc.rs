//! XEP-0133 `add-user` / `delete-user` through the component, as XEP-0050 two-step commands.
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
    add_user_form, command, command_iq, delete_user_form, parse_command, server_jid, CommandReply,
    ADD_USER, DELETE_USER,
};
use crate::component::Link;
use crate::quirks::{add_user_outcome, command_error, delete_user_outcome, session_limit_error};
use crate::stanza::reply_payload;
use crate::XmppError;

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
                if e.defined_condition == DefinedCondition::Forbidden {
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
