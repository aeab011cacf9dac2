//! XEP-0050 command elements and replies as they go over the wire: the `<command/>` element, the
//! XEP-0133 `add-user` / `delete-user` forms, a parsed reply and the cancelling IQ. Pure
//! functions (xmpp-parsers has no XEP-0050 type, so the `<command/>` is built with
//! `Element::builder` around a typed `DataForm`), below both the link (`component`, which sends a cancel) and the command runner
//! (`adhoc`), so neither imports the other for them.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::stanza::attr_name;
use crate::{XmppConfig, XmppError};

pub(crate) const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
pub(crate) const NS_ADMIN: &str = "http://jabber.org/protocol/admin";
pub(crate) const ADD_USER: &str = "http://jabber.org/protocol/admin#add-user";
pub(crate) const DELETE_USER: &str = "http://jabber.org/protocol/admin#delete-user";
pub(crate) const CHANGE_USER_PASSWORD: &str =
    "http://jabber.org/protocol/admin#change-user-password";
pub(crate) const END_USER_SESSION: &str = "http://jabber.org/protocol/admin#end-user-session";

/// A `<command/>` element: `action` is `execute`, `complete` or `cancel`.
pub(crate) fn command(
    node: &str,
    action: &str,
    session: Option<&str>,
    form: Option<DataForm>,
) -> Element {
    let mut b = Element::builder("command", NS_COMMANDS)
        .attr(attr_name("node"), node)
        .attr(attr_name("action"), action);
    if let Some(session) = session {
        b = b.attr(attr_name("sessionid"), session);
    }
    if let Some(form) = form {
        b = b.append(Element::from(form));
    }
    b.build()
}

/// A submitted form of the admin commands (XEP-0133) with these fields.
fn submitted(fields: Vec<Field>) -> DataForm {
    DataForm::new(DataFormType::Submit, NS_ADMIN, fields)
}

/// The fields naming an account and its (new) password: `add-user` and `change-user-password`
/// begin with them.
fn account_and_password(jid: &str, password: &str) -> Vec<Field> {
    vec![
        Field::new("accountjid", FieldType::JidSingle).with_value(jid),
        Field::new("password", FieldType::TextPrivate).with_value(password),
    ]
}

/// The submitted form of `add-user`.
pub(crate) fn add_user_form(jid: &str, password: &str) -> DataForm {
    let mut fields = account_and_password(jid, password);
    fields.push(Field::new("password-verify", FieldType::TextPrivate).with_value(password));
    submitted(fields)
}

/// The submitted form of `delete-user`.
pub(crate) fn delete_user_form(jid: &str) -> DataForm {
    submitted(vec![
        Field::new("accountjids", FieldType::JidMulti).with_value(jid)
    ])
}

/// The submitted form of `change-user-password`.
pub(crate) fn change_password_form(jid: &str, password: &str) -> DataForm {
    submitted(account_and_password(jid, password))
}

/// The submitted form of `end-user-session`. XEP-0133 names the field `accountjids`
/// (jid-multi: Prosody, Openfire); ejabberd's form asks for `accountjid` (jid-single). Each server
/// reads the field its own form offered and ignores the other, so both are sent.
pub(crate) fn end_sessions_form(jid: &str) -> DataForm {
    let multi = Field::new("accountjids", FieldType::JidMulti).with_value(jid);
    let single = Field::new("accountjid", FieldType::JidSingle).with_value(jid);
    DataForm::new(DataFormType::Submit, NS_ADMIN, vec![multi, single])
}

/// What a command reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandReply {
    pub status: String,
    pub sessionid: Option<String>,
    /// `(type, text)` of each `<note/>`; type defaults to `info`.
    pub notes: Vec<(String, String)>,
    pub has_form: bool,
}

impl CommandReply {
    /// Ok when the command `what` ended `completed`; any other status is a protocol error.
    pub(crate) fn completed(&self, what: &str) -> Result<(), XmppError> {
        if self.status == "completed" {
            return Ok(());
        }
        Err(XmppError::Protocol(format!(
            "{what} ended in status '{}'",
            self.status
        )))
    }
}

pub(crate) fn parse_command(payload: Option<&Element>) -> Result<CommandReply, XmppError> {
    let cmd = payload
        .filter(|p| p.is("command", NS_COMMANDS))
        .ok_or_else(|| XmppError::Protocol("command reply without <command/>".into()))?;
    let notes = cmd
        .children()
        .filter(|c| c.is("note", NS_COMMANDS))
        .map(|n| (n.attr("type").unwrap_or("info").to_owned(), n.text()))
        .collect();
    Ok(CommandReply {
        status: cmd.attr("status").unwrap_or("").to_owned(),
        sessionid: cmd.attr("sessionid").map(str::to_owned),
        notes,
        has_form: cmd.has_child("x", xmpp_parsers::ns::DATA_FORMS),
    })
}

/// An IQ `set` of `payload` to `to` (the id is given when it is sent).
pub(crate) fn command_iq(to: &Jid, payload: Element) -> Iq {
    Iq::Set {
        from: None,
        to: Some(to.clone()),
        id: String::new(),
        payload,
    }
}

/// The IQ cancelling command session `session` of `node`. Openfire removes the session and
/// answers `bad-request` (cancel is not among the actions it offered); nobody waits for it.
pub(crate) fn cancel_iq(cfg: &XmppConfig, node: &str, session: &str) -> Iq {
    command_iq(
        &server_jid(cfg),
        command(node, "cancel", Some(session), None),
    )
}

/// The server's own JID (the users' domain).
pub(crate) fn server_jid(cfg: &XmppConfig) -> Jid {
    Jid::new(&cfg.domain).unwrap_or_else(|_| Jid::new("invalid.invalid").expect("valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_and_submit_elements() {
        let exec = command(ADD_USER, "execute", None, None);
        assert_eq!(exec.attr("node"), Some(ADD_USER));
        assert_eq!(exec.attr("action"), Some("execute"));
        assert!(exec.attr("sessionid").is_none());

        let submit = command(
            ADD_USER,
            "complete",
            Some("s1"),
            Some(add_user_form("a@b", "pw")),
        );
        assert_eq!(submit.attr("sessionid"), Some("s1"));
        let form =
            DataForm::try_from(submit.get_child("x", "jabber:x:data").unwrap().clone()).unwrap();
        assert_eq!(form.type_, DataFormType::Submit);
        assert_eq!(form.form_type(), Some(NS_ADMIN));
        let value = |var: &str| {
            form.fields
                .iter()
                .find(|f| f.var.as_deref() == Some(var))
                .unwrap()
                .values
                .clone()
        };
        assert_eq!(value("accountjid"), vec!["a@b"]);
        assert_eq!(value("password"), vec!["pw"]);
        assert_eq!(value("password-verify"), vec!["pw"]);

        let del = delete_user_form("a@b");
        assert_eq!(
            del.fields
                .iter()
                .find(|f| f.var.as_deref() == Some("accountjids"))
                .unwrap()
                .values,
            vec!["a@b"]
        );
    }

    fn reply(xml: &str) -> CommandReply {
        let el: Element = xml.parse().unwrap();
        parse_command(Some(&el)).unwrap()
    }

    #[test]
    fn parses_form_reply() {
        let r = reply(
            "<command xmlns='http://jabber.org/protocol/commands' status='executing' sessionid='x1' \
             node='http://jabber.org/protocol/admin#add-user'><x xmlns='jabber:x:data' type='form'/></command>",
        );
        assert_eq!(r.status, "executing");
        assert_eq!(r.sessionid.as_deref(), Some("x1"));
        assert!(r.has_form);
    }

    #[test]
    fn no_command_is_a_protocol_error() {
        assert!(parse_command(None).is_err());
    }
}
