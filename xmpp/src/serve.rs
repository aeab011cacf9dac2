//! What the component answers by itself: disco#info, XEP-0199 pings, `service-unavailable` for any
//! other request, `bad-request` for an IQ it cannot parse; and reading the server's messages that
//! matter (stream errors, the XEP-0356 privilege grant). Pure functions, tested without a socket.

use std::collections::{BTreeSet, HashMap};

use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::quirks::{NS_PRIVILEGE_1, NS_PRIVILEGE_2};

/// The condition name of a `<stream:error/>`, e.g. `not-authorized`.
pub(crate) fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.ns() == ns::XMPP_STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned())
}

fn error(type_: ErrorType, cond: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(type_, cond, "en", text)
}

/// The answer to a get/set addressed to the component.
pub(crate) fn answer_request(request: Iq, me: &Jid) -> Element {
    let (from, id, payload, get) = match request {
        Iq::Get {
            from, id, payload, ..
        } => (from, id, payload, true),
        Iq::Set {
            from, id, payload, ..
        } => (from, id, payload, false),
        // Results and errors are routed before this is called.
        Iq::Result { from, id, .. } | Iq::Error { from, id, .. } => {
            (from, id, Element::bare("x", "x"), false)
        }
    };
    let reply = if get && payload.is("query", ns::DISCO_INFO) && payload.attr("node").is_none() {
        let info = DiscoInfoResult {
            node: None,
            identities: vec![Identity {
                category: "component".into(),
                type_: "generic".into(),
                lang: None,
                name: Some("register".into()),
            }],
            features: BTreeSet::from([ns::DISCO_INFO.to_owned(), ns::PING.to_owned()]),
            extensions: vec![],
        };
        Iq::Result {
            from: None,
            to: None,
            id,
            payload: Some(info.into()),
        }
    } else if get && payload.is("ping", ns::PING) {
        crate::stanza::empty_result(id)
    } else {
        let err = error(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "not supported",
        );
        Iq::from_error(id, err)
    };
    let mut reply = reply.with_from(me.clone());
    *reply.to_mut() = from;
    reply.into()
}

/// A `bad-request` reply to an IQ get/set we could not parse (nothing for results and errors).
pub(crate) fn bad_request_reply(el: &Element, me: &Jid) -> Option<Element> {
    let kind = el.attr("type")?;
    if kind != "get" && kind != "set" {
        return None;
    }
    let id = el.attr("id")?.to_owned();
    let to = el.attr("from").and_then(|f| Jid::new(f).ok());
    let err = error(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        "unparsable request",
    );
    let mut reply = Iq::from_error(id, err).with_from(me.clone());
    *reply.to_mut() = to;
    Some(reply.into())
}

/// Roster privilege the server granted the component (XEP-0356).
#[derive(Debug, Clone, Default)]
pub(crate) struct Privileges {
    /// Namespace the server used (`urn:xmpp:privilege:2` or `:1`).
    pub namespace: String,
    /// `access` → `type`, e.g. `roster` → `both`.
    pub perms: HashMap<String, String>,
}

/// The privileges granted in a `<message><privilege/></message>`, if this is one.
pub(crate) fn parse_privileges(el: &Element) -> Option<Privileges> {
    let p = el
        .get_child("privilege", NS_PRIVILEGE_2)
        .or_else(|| el.get_child("privilege", NS_PRIVILEGE_1))?;
    let mut perms = HashMap::new();
    for perm in p.children().filter(|c| c.name() == "perm") {
        if let (Some(access), Some(kind)) = (perm.attr("access"), perm.attr("type")) {
            perms.insert(access.to_owned(), kind.to_owned());
        }
    }
    Some(Privileges {
        namespace: p.ns(),
        perms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};
    use xmpp_parsers::component::Handshake;

    fn me() -> Jid {
        Jid::new("register.example.test").unwrap()
    }

    /// Requests the component gets: service discovery, a ping, and a roster set (not ours).
    const DISCO_INFO: &str = "<iq xmlns='jabber:client' type='get' id='d1' from='example.test'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    const PING: &str = "<iq xmlns='jabber:client' type='get' id='p1' from='u@example.test/r'>\
         <ping xmlns='urn:xmpp:ping'/></iq>";
    const ROSTER_SET: &str = "<iq xmlns='jabber:client' type='set' id='s1' from='u@example.test'>\
         <query xmlns='jabber:iq:roster'/></iq>";

    /// The component's answer to the request `xml`, checked to be of type `kind`.
    fn answer(xml: &str, kind: &str) -> Element {
        let iq = Iq::try_from(xml.parse::<Element>().unwrap()).unwrap();
        let reply = answer_request(iq, &me());
        assert_eq!(reply.attr("type"), Some(kind), "{reply:?}");
        reply
    }

    #[test]
    fn handshake_digest_is_hex_sha1_of_id_and_secret() {
        let hs = Handshake::from_stream_id_and_password("3BF96D32".into(), "s3cr3t");
        let el: Element = hs.into();
        let expected = hex::encode(Sha1::digest(b"3BF96D32s3cr3t"));
        assert_eq!(el.text(), expected);
        assert_eq!(el.name(), "handshake");
    }

    #[test]
    fn disco_info_and_ping_answered() {
        let reply = answer(DISCO_INFO, "result");
        assert_eq!(reply.attr("to"), Some("example.test"));
        let query = reply.get_child("query", ns::DISCO_INFO).unwrap();
        let identity = query.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("category"), Some("component"));
        assert_eq!(
            query.children().filter(|c| c.name() == "feature").count(),
            2
        );

        let reply = answer(PING, "result");
        assert_eq!(reply.attr("id"), Some("p1"));
    }

    #[test]
    fn other_requests_get_service_unavailable() {
        let reply = answer(ROSTER_SET, "error");
        let err = reply.get_child("error", ns::JABBER_CLIENT).unwrap();
        assert!(err.has_child("service-unavailable", ns::XMPP_STANZAS));
    }

    #[test]
    fn unparsable_get_gets_bad_request_but_results_do_not() {
        let bad: Element = "<iq xmlns='jabber:client' type='get' id='b1' from='u@example.test'/>"
            .parse()
            .unwrap();
        assert!(Iq::try_from(bad.clone()).is_err());
        let reply = bad_request_reply(&bad, &me()).unwrap();
        assert_eq!(reply.attr("type"), Some("error"));
        let res: Element = "<iq xmlns='jabber:client' type='bogus' id='b2'/>"
            .parse()
            .unwrap();
        assert!(bad_request_reply(&res, &me()).is_none());
    }

    #[test]
    fn privileges_v1_and_v2() {
        let m: Element = "<message xmlns='jabber:client' from='example.test'>\
             <privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/>\
             <perm access='message' type='outgoing'/></privilege></message>"
            .parse()
            .unwrap();
        let p = parse_privileges(&m).unwrap();
        assert_eq!(p.perms.get("roster").map(String::as_str), Some("both"));
        assert_eq!(p.namespace, NS_PRIVILEGE_2);
        let m1: Element = "<message xmlns='jabber:client'><privilege xmlns='urn:xmpp:privilege:1'>\
             <perm access='roster' type='get'/></privilege></message>"
            .parse()
            .unwrap();
        assert_eq!(parse_privileges(&m1).unwrap().perms["roster"], "get");
        let plain: Element = "<message xmlns='jabber:client'><body>hi</body></message>"
            .parse()
            .unwrap();
        assert!(parse_privileges(&plain).is_none());
    }

    #[test]
    fn stream_error_conditions() {
        let e: Element = "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
             <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
            .parse()
            .unwrap();
        assert_eq!(stream_error_condition(&e), "not-authorized");
    }
}
