//! Every difference between XMPP servers that this crate handles, in one place.
//!
//! | What                              | Prosody 0.12                                         | ejabberd 23.01                                   | Openfire 4.9–5.x                              |
//! |-----------------------------------|------------------------------------------------------|--------------------------------------------------|-----------------------------------------------|
//! | Component stream header           | no `version`                                         | no `version`                                     | no `version`, double quotes, `encoding='UTF-8'` declaration |
//! | XEP-0133 from the component       | component domain in `admins`                         | ACL `server: [component]` + `access_rules: configure` | works out of the box (add/delete-user)   |
//! | add-user success                  | completed + `<note type='info'>`                     | completed, no note                               | completed + `<note type='info'>`              |
//! | add-user of an existing account   | completed + `<note type='error'>Account already exists` | IQ error `conflict`                              | completed + `<note type='error'>User already exists.` in the **server's locale** (never an IQ `conflict`) |
//! | delete-user of a missing account  | completed + `<note type='info'>…could not be deleted…` | IQ error `item-not-found`                        | completed + `<note type='error'>User does not exist: {jid}` (localised; the JID is there in every language) |
//! | Malformed command input           | IQ error                                             | IQ error                                         | delete-user without its field: **no reply at all** (we time out and cancel) |
//! | Open ad-hoc sessions              | expire                                               | expire                                           | 100 per requester (`xmpp.command.limit`; all instances on a name are one requester), `not-allowed` beyond, never expired unless reused: queue in front, always complete or cancel, retry `not-allowed` |
//! | `cancel` of a command session     | `status='canceled'`                                  | `status='canceled'`                              | session removed, then IQ error `bad-request` |
//! | Read-only user store              | —                                                    | —                                                | every add-user / delete-user `forbidden` (`hasPermission`), already at the execute: found by the add-user probe after each link-up and in `register check` (nothing created, session cancelled) |
//! | Contacts from a shared group      | —                                                    | —                                                | in the roster as `both` with the group's display name: a bind is "already bound"; their removal is IQ error `not-acceptable` (`SharedGroupException`): unbind takes it as nothing of ours to remove (`roster`) |
//! | c2s SASL / TLS by default         | as configured (SCRAM-SHA-1 offered)                  | as configured (SCRAM-SHA-1 offered)              | PLAIN, DIGEST-MD5, CRAM-MD5, SCRAM-SHA-1 (no SCRAM-SHA-256); STARTTLS `optional` on 5222, direct TLS on 5223 (not used) |
//! | XEP-0077 in-band registration     | `allow_registration = true`                          | `mod_register` with `access: register`, `registration_timeout: infinity` | `register.inband` (default on) |
//! | XEP-0356 namespace                | `urn:xmpp:privilege:2` (`mod_privilege`, prosody-modules) | `urn:xmpp:privilege:1`                      | not supported                                 |
//! | XEP-0356 roster set               | works                                                | **broken**: `internal-server-error` (issue 3942, fixed in 23.10) | —                       |
//! | Roster set to a missing user      | `service-unavailable`                                | `internal-server-error` on 23.01                 | —                                             |
//! | Idle component link               | kept                                                 | kept                                             | closed after two reader-idle periods of `xmpp.component.idle`/2 (3 min) without a stanza in between: keepalive under idle/2 |
//! | Second component connection       | `conflict`                                           | `conflict`                                       | header **without id, then close, no stream error** (also for a subdomain not permitted or without secret); accepted with `allowMultiple` in our header |
//!
//! Openfire's column follows its source (igniterealtime/Openfire, under
//! `xmppserver/src/main/java/org/jivesoftware/`): `openfire/session/LocalComponentSession.java`,
//! `openfire/nio/NettyConnection.java`, `openfire/SessionManager.java`,
//! `openfire/commands/AdHocCommandManager.java`, `openfire/commands/admin/user/AddUser.java` and
//! `DeleteUser.java`, `openfire/nio/NettyIdleStateKeepAliveHandler.java`,
//! `openfire/roster/Roster.java` and `openfire/handler/IQRosterHandler.java` (shared groups),
//! `openfire/net/SASLAuthentication.java` and `openfire/spi/ConnectionListener.java` (c2s), and
//! the notes' texts in `i18n/src/main/resources/openfire_i18n*.properties`.
//!
//! How the code uses this table:
//! - [`add_user_outcome`] / [`delete_user_outcome`] read the `<note/>` of a completed command by
//!   structure first (note type, the account JID in the text; English only as a last resort),
//!   [`command_error`] an IQ error answering a command: both shapes map to the same
//!   [`XmppError`] (`Conflict`, `NotFound`, `Refused`).
//! - [`PrivilegedRoster`] is decided once per link-up (privileged binding only): a server that
//!   grants the roster privilege in the v1 namespace is probed with a harmless roster set (removing
//!   a nonexistent item of a nonexistent user, see [`roster_set_probe`]); an
//!   `internal-server-error` ([`judge_roster_set_probe`]) marks privileged roster writes as broken,
//!   which is logged at link-up and makes bind/unbind fail at once with
//!   [`XmppError::Unsupported`] instead of half-way through.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::roster::{Item, Roster, Subscription};
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::command::CommandReply;
use crate::stanza::{error_text, random_suffix, reply_payload};
use crate::XmppError;

/// XEP-0356 namespaces: v2 (Prosody's mod_privilege) and v1 (ejabberd up to at least 23.10).
pub(crate) const NS_PRIVILEGE_2: &str = "urn:xmpp:privilege:2";
pub(crate) const NS_PRIVILEGE_1: &str = "urn:xmpp:privilege:1";

/// Whether `text` names `jid` (case-insensitively: servers may fold the node).
fn names_jid(text: &str, jid: &str) -> bool {
    !jid.is_empty() && text.to_lowercase().contains(&jid.to_lowercase())
}

/// English texts of add-user refusals other than "exists" (Openfire's `AddUser` notes, Prosody's
/// messages); the last resort, used only to tell these apart from "exists".
const ADD_USER_OTHER_REFUSALS: &[&str] = &[
    "password",
    "remote",
    "read only",
    "read-only",
    "email",
    "e-mail",
    "invalid",
    "required",
    "not local",
];

/// The outcome of a completed `add-user` of `jid`. Judged by structure first, because Openfire
/// writes its notes in the server's locale (`JiveGlobals.getLocale()`, e.g. German "Benutzer
/// existiert bereits."):
/// - completed with an `info` note or none (ejabberd) → created;
/// - an `error` note → refused. English text is read only to tell "exists" from the other
///   refusals; an `error` note we cannot read is taken as "exists", because with the form sent
///   here (a JID of the configured domain, the same password twice) that is the only refusal
///   Openfire's `AddUser` gives once `register check` passed (its probe account is fresh, so a
///   "exists" there names the real cause, see [`Xmpp::probe`](crate::Xmpp::probe)).
pub(crate) fn add_user_outcome(reply: &CommandReply, _jid: &str) -> Result<(), XmppError> {
    if let Some((_, text)) = reply.notes.iter().find(|(kind, _)| kind == "error") {
        let lower = text.to_lowercase();
        if lower.contains("already exist") || lower.contains("conflict") {
            return Err(XmppError::Conflict);
        }
        if ADD_USER_OTHER_REFUSALS.iter().any(|w| lower.contains(w)) {
            return Err(XmppError::Refused(text.clone()));
        }
        return Err(XmppError::Conflict);
    }
    reply.completed("add-user")
}

/// The outcome of a completed `delete-user` of `jid`, by structure first:
/// - an `error` note naming the JID → the account does not exist (Openfire's `DeleteUser`
///   note `user-does-not-exist` carries the JID in every language: "User does not exist: {jid}",
///   French "Lutilisateur nexiste pas : {jid}"), unless its English text says the JID is remote;
/// - an `error` note without the JID → refused (read-only store, invalid JID), unless its
///   English text says "does not exist";
/// - an `info` note: Prosody reports a missing account only there ("could not be deleted",
///   English, Prosody does not translate) → not found; otherwise deleted.
pub(crate) fn delete_user_outcome(reply: &CommandReply, jid: &str) -> Result<(), XmppError> {
    for (kind, text) in &reply.notes {
        let lower = text.to_lowercase();
        let english_missing = lower.contains("could not be deleted")
            || lower.contains("not found")
            || lower.contains("does not exist")
            || lower.contains("doesn't exist");
        if kind == "error" {
            if names_jid(text, jid) && !lower.contains("remote") {
                return Err(XmppError::NotFound);
            }
            if english_missing {
                return Err(XmppError::NotFound);
            }
            return Err(XmppError::Refused(text.clone()));
        }
        if english_missing {
            return Err(XmppError::NotFound);
        }
    }
    reply.completed("delete-user")
}

/// `not-allowed` answering a command's first step, still there when the retries ran out.
/// Openfire gives it to a requester with `xmpp.command.limit` (100) open sessions, and all
/// instances on one component name are one requester; other servers use it for a component not
/// allowed to run the command.
pub(crate) fn session_limit_error(err: &StanzaError) -> XmppError {
    XmppError::Refused(format!(
        "{} (Openfire: the component has xmpp.command.limit command sessions open — keep \
         instances × xmpp.command_sessions under it, or restart Openfire to drop leaked sessions; \
         other servers: the component may not run XEP-0133 commands)",
        error_text(err)
    ))
}

/// An IQ error answering an ad-hoc command (ejabberd reports outcomes this way: `conflict` for an
/// existing account, `item-not-found` for a missing one). `forbidden` / `not-authorized` mean the
/// server does not let the component run admin commands: say what to configure.
pub(crate) fn command_error(err: &StanzaError) -> XmppError {
    match err.defined_condition {
        DefinedCondition::Conflict => XmppError::Conflict,
        DefinedCondition::ItemNotFound => XmppError::NotFound,
        DefinedCondition::Forbidden | DefinedCondition::NotAllowed => XmppError::Refused(format!(
            "{} (the server does not let the component run XEP-0133 commands: Prosody needs \
             the component in `admins`, ejabberd an ACL for it in `access_rules: configure`; \
             Openfire allows any component unless its user store is read-only — LDAP/AD or a \
             read-only JDBC provider: make the store writable, i.e. set provider.user.className \
             to org.jivesoftware.openfire.user.DefaultUserProvider, or use HybridUserProvider \
             with DefaultUserProvider as one of its hybridUserProvider.*Provider.className)",
            error_text(err)
        )),
        _ => XmppError::Refused(error_text(err)),
    }
}

/// Whether XEP-0356 roster writes through the component work on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrivilegedRoster {
    /// Not decided yet (link down, or the check is running).
    Unknown,
    /// Works, or nothing known against it (missing permissions are reported separately).
    Usable,
    /// Known broken; the text says why and what to do.
    Broken(String),
}

/// Whether a grant in `namespace` calls for the roster-set probe. Only the v1 namespace does:
/// ejabberd 23.01 (v1) fails every roster set, Prosody (v2) works.
pub(crate) fn needs_roster_set_probe(namespace: &str) -> bool {
    namespace == NS_PRIVILEGE_1
}

/// A harmless privileged roster set: remove a nonexistent contact from a nonexistent user. A
/// working server answers `item-not-found`, `service-unavailable` or success without changing
/// anything; ejabberd 23.01 answers `internal-server-error`.
pub(crate) fn roster_set_probe(domain: &str) -> Iq {
    let user = format!("register-probe-{}@{domain}", random_suffix());
    let contact = format!("register-probe-{}@{domain}", random_suffix());
    let item = Item {
        jid: xmpp_parsers::jid::BareJid::new(&contact).expect("a valid probe JID"),
        name: None,
        subscription: Subscription::Remove,
        ask: Default::default(),
        groups: vec![],
        approved: None,
    };
    let to = Jid::new(&user).expect("a valid probe JID");
    Iq::from_set(
        "",
        Roster {
            ver: None,
            items: vec![item],
        },
    )
    .with_to(to)
}

/// The message given when privileged roster writes are known broken.
pub(crate) const EJABBERD_ROSTER_SET_BROKEN: &str =
    "privileged roster set is broken on this server (it answers internal-server-error; ejabberd \
     23.01 has this bug, ejabberd issue 3942, fixed in 23.10); use binding = \"c2s\"";

/// Judges the reply to [`roster_set_probe`].
pub(crate) fn judge_roster_set_probe(reply: Iq) -> PrivilegedRoster {
    match reply_payload(reply) {
        Err(e) if e.defined_condition == DefinedCondition::InternalServerError => {
            PrivilegedRoster::Broken(format!(
                "{EJABBERD_ROSTER_SET_BROKEN} (probe: {})",
                error_text(&e)
            ))
        }
        _ => PrivilegedRoster::Usable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse_command;
    use minidom::Element;

    fn reply(xml: &str) -> CommandReply {
        let el: Element = xml.parse().unwrap();
        parse_command(Some(&el)).unwrap()
    }

    #[test]
    fn note_mapping_prosody_openfire_ejabberd() {
        let ok = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='info'>Account successfully created</note></command>");
        assert!(add_user_outcome(&ok, "x@y").is_ok());
        // ejabberd: completed without a note.
        let bare =
            reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'/>");
        assert!(add_user_outcome(&bare, "x@y").is_ok());
        assert!(delete_user_outcome(&bare, "x@y").is_ok());
        // Prosody.
        let exists = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='error'>Account already exists</note></command>");
        assert!(matches!(
            add_user_outcome(&exists, "x@y"),
            Err(XmppError::Conflict)
        ));
        // Openfire.
        let exists = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='error'>User already exists</note></command>");
        assert!(matches!(
            add_user_outcome(&exists, "x@y"),
            Err(XmppError::Conflict)
        ));
        let gone = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='error'>User does not exist.</note></command>");
        assert!(matches!(
            delete_user_outcome(&gone, "x@y"),
            Err(XmppError::NotFound)
        ));
        let other = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='error'>Password mismatch</note></command>");
        assert!(
            matches!(add_user_outcome(&other, "x@y"), Err(XmppError::Refused(t)) if t == "Password mismatch")
        );
        let gone = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='info'>The following accounts could not be deleted:\nx@y</note></command>");
        assert!(matches!(
            delete_user_outcome(&gone, "x@y"),
            Err(XmppError::NotFound)
        ));
        let deleted = reply("<command xmlns='http://jabber.org/protocol/commands' status='completed'><note type='info'>The following accounts were successfully deleted:\nx@y</note></command>");
        assert!(delete_user_outcome(&deleted, "x@y").is_ok());
    }

    fn note(kind: &str, text: &str) -> CommandReply {
        CommandReply {
            status: "completed".into(),
            sessionid: Some("s".into()),
            notes: vec![(kind.into(), text.into())],
            has_form: false,
        }
    }

    /// Openfire's notes as its resource bundles (openfire_i18n*.properties) render them, with
    /// `{0}` filled by MessageFormat (which drops the French apostrophes).
    #[test]
    fn openfire_notes_are_judged_without_the_servers_language() {
        let jid = "ghost@example.test";
        for success in [
            "Operation finished successfully.",
            "L'opération s'est terminée avec succès.",
        ] {
            assert!(add_user_outcome(&note("info", success), jid).is_ok());
            assert!(delete_user_outcome(&note("info", success), jid).is_ok());
        }
        for exists in [
            "User already exists.",
            "Benutzer existiert bereits.",
            "L'utilisateur existe déjà.",
        ] {
            assert!(
                matches!(
                    add_user_outcome(&note("error", exists), jid),
                    Err(XmppError::Conflict)
                ),
                "{exists}"
            );
        }
        for other in [
            "Passwords do not match.",
            "Cannot create remote user.",
            "User provider is read only. New users cannot be created.",
        ] {
            assert!(
                matches!(add_user_outcome(&note("error", other), jid), Err(XmppError::Refused(t)) if t == other),
                "{other}"
            );
        }
        for gone in [
            format!("User does not exist: {jid}"),
            format!("Lutilisateur nexiste pas : {jid}"),
        ] {
            assert!(
                matches!(
                    delete_user_outcome(&note("error", &gone), jid),
                    Err(XmppError::NotFound)
                ),
                "{gone}"
            );
        }
        // The JID is what tells "missing" apart: an error note without it is a refusal, even in
        // a language that is not read here.
        let readonly = "Le fournisseur d'utilisateurs est en lecture seule. Les utilisateurs ne peuvent pas être supprimés.";
        assert!(matches!(
            delete_user_outcome(&note("error", readonly), jid),
            Err(XmppError::Refused(t)) if t == readonly
        ));
        let remote = format!("Cannot delete remote user: {jid}");
        assert!(matches!(
            delete_user_outcome(&note("error", &remote), jid),
            Err(XmppError::Refused(_))
        ));
        // English stays the last resort: "does not exist" without our JID still reads missing.
        assert!(matches!(
            delete_user_outcome(
                &note("error", "User does not exist: other@example.test"),
                jid
            ),
            Err(XmppError::NotFound)
        ));
    }

    fn iq_error(cond: DefinedCondition) -> Iq {
        Iq::from_error(
            "x",
            StanzaError::new(
                xmpp_parsers::stanza_error::ErrorType::Wait,
                cond,
                "en",
                "Module failed to handle the query",
            ),
        )
    }

    #[test]
    fn command_errors() {
        let e = |c| match iq_error(c) {
            Iq::Error { error, .. } => command_error(&error),
            _ => unreachable!(),
        };
        assert!(matches!(e(DefinedCondition::Conflict), XmppError::Conflict));
        assert!(matches!(
            e(DefinedCondition::ItemNotFound),
            XmppError::NotFound
        ));
        assert!(
            matches!(e(DefinedCondition::Forbidden), XmppError::Refused(t) if t.contains("admins"))
        );
    }

    #[test]
    fn roster_set_probe_judgement() {
        assert!(needs_roster_set_probe(NS_PRIVILEGE_1));
        assert!(!needs_roster_set_probe(NS_PRIVILEGE_2));
        let probe: Element = roster_set_probe("example.test").into();
        assert_eq!(probe.attr("type"), Some("set"));
        assert!(probe.attr("to").unwrap().ends_with("@example.test"));
        let item = probe
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .get_child("item", "jabber:iq:roster")
            .unwrap();
        assert_eq!(item.attr("subscription"), Some("remove"));
        assert!(matches!(
            judge_roster_set_probe(iq_error(DefinedCondition::InternalServerError)),
            PrivilegedRoster::Broken(t) if t.contains("binding = \"c2s\"")
        ));
        for ok in [
            DefinedCondition::ItemNotFound,
            DefinedCondition::ServiceUnavailable,
        ] {
            assert_eq!(
                judge_roster_set_probe(iq_error(ok)),
                PrivilegedRoster::Usable
            );
        }
        let result = Iq::Result {
            from: None,
            to: None,
            id: "x".into(),
            payload: None,
        };
        assert_eq!(judge_roster_set_probe(result), PrivilegedRoster::Usable);
    }
}
