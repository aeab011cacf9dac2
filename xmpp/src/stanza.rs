//! Small XML helpers shared by the component link and the c2s sessions.
//!
//! xmpp-parsers is built without its `component` feature (see XMPP-NOTES.md: that feature would
//! switch every typed stanza of the whole build to `jabber:component:accept`), so typed stanzas are
//! always `jabber:client`. On the component link, [`to_component`] and [`from_component`] move a
//! stanza between the two namespaces; everything else is built with xmpp-parsers types or
//! `Element::builder`, never by formatting XML.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use minidom::rxml::NcName;
use minidom::{Element, Node};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::XmppError;

/// `jabber:component:accept`, the default namespace of the component stream.
pub(crate) const NS_COMPONENT: &str = ns::COMPONENT_ACCEPT;

/// An empty `result` to the request `id` (the address is set by the caller when needed).
pub(crate) fn empty_result(id: String) -> Iq {
    Iq::Result {
        from: None,
        to: None,
        id,
        payload: None,
    }
}

/// An XML attribute name from a literal.
pub(crate) fn attr_name(name: &str) -> NcName {
    NcName::try_from(name).expect("attribute names used by this crate are valid NCNames")
}

/// Rebuilds `el` with every element in namespace `from` moved to namespace `to` (the stanza and
/// its `jabber:client` children such as `<error/>`, `<body/>`, `<status/>`).
pub(crate) fn swap_ns(el: &Element, from: &str, to: &str) -> Element {
    let ns = el.ns();
    let ns = if ns == from { to.to_owned() } else { ns };
    let mut b = Element::builder(el.name(), ns);
    for ((attr_ns, name), value) in el.attrs().iter() {
        b = b.attr_ns(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in el.nodes() {
        b = match node {
            Node::Element(child) => b.append(swap_ns(child, from, to)),
            Node::Text(text) => b.append(text.clone()),
        };
    }
    b.build()
}

/// A typed (jabber:client) stanza made ready for the component stream.
pub(crate) fn to_component(el: &Element) -> Element {
    swap_ns(el, ns::JABBER_CLIENT, NS_COMPONENT)
}

/// Whether every attribute value and text of `el` is made of characters XML 1.0 allows. The
/// stream's encoder refuses others (U+FFFF, most C0 controls) with an error that would end the
/// link, so a stanza that fails this is refused on its own, before it is queued.
pub(crate) fn xml_safe(el: &Element) -> bool {
    fn ok(s: &str) -> bool {
        s.chars().all(|c| {
            matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
        })
    }
    el.attrs().into_iter().all(|(_, v)| ok(v))
        && el.nodes().all(|n| match n {
            minidom::Node::Element(e) => xml_safe(e),
            minidom::Node::Text(t) => ok(t),
        })
}

/// A stanza read from the component stream, made parseable by xmpp-parsers.
pub(crate) fn from_component(el: &Element) -> Element {
    swap_ns(el, NS_COMPONENT, ns::JABBER_CLIENT)
}

/// Globally unique stanza ids: a random per-process prefix and a counter.
pub(crate) fn next_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| format!("reg-{:016x}", rand::random::<u64>()));
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A random suffix for resources and probe nodes: 12 lowercase hex characters.
pub(crate) fn random_suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// The first text of a stanza error, or its condition name.
pub(crate) fn error_text(err: &StanzaError) -> String {
    let cond = condition_name(&err.defined_condition);
    match err.texts.values().next() {
        Some(text) if !text.is_empty() => format!("{cond}: {text}"),
        _ => cond,
    }
}

/// The RFC 6120 name of a stanza error condition.
pub(crate) fn condition_name(cond: &DefinedCondition) -> String {
    let el: Element = cond.clone().into();
    el.name().to_owned()
}

/// Maps an IQ error reply to the generic error kinds (callers handle the specific ones first).
pub(crate) fn iq_error(err: &StanzaError) -> XmppError {
    match err.defined_condition {
        DefinedCondition::Conflict => XmppError::Conflict,
        DefinedCondition::ItemNotFound => XmppError::NotFound,
        _ => XmppError::Refused(error_text(err)),
    }
}

/// Splits a reply into its payload or an error.
pub(crate) fn reply_payload(reply: Iq) -> Result<Option<Element>, Box<StanzaError>> {
    match reply {
        Iq::Result { payload, .. } => Ok(payload),
        Iq::Error { error, .. } => Err(Box::new(error)),
        // A get or set with our id is not a reply; treat as empty.
        Iq::Get { .. } | Iq::Set { .. } => Ok(None),
    }
}

/// One space: the whitespace keepalive, written between stanzas inside the stream element.
pub(crate) struct Whitespace;

impl xso::AsXml for Whitespace {
    type ItemIter<'x> = std::iter::Once<Result<xso::Item<'x>, xso::error::Error>>;

    fn as_xml_iter(&self) -> Result<Self::ItemIter<'_>, xso::error::Error> {
        Ok(std::iter::once(Ok(xso::Item::Text(Cow::Borrowed(" ")))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_xml_forbids_are_found_anywhere_in_a_stanza() {
        let item = |name: &str, group: &str| {
            Element::builder("iq", "jabber:client")
                .attr("type".try_into().unwrap(), "set")
                .append(
                    Element::builder("item", "jabber:iq:roster")
                        .attr("name".try_into().unwrap(), name)
                        .append(
                            Element::builder("group", "jabber:iq:roster")
                                .append(group)
                                .build(),
                        )
                        .build(),
                )
                .build()
        };
        assert!(xml_safe(&item("cam-1 名字 \u{1F600}", "Device")));
        assert!(!xml_safe(&item("cam\u{FFFF}", "Device")), "in an attribute");
        assert!(!xml_safe(&item("cam", "Dev\u{1}ice")), "in a child's text");
        assert!(!xml_safe(&item("cam\u{FFFE}", "Device")));
    }

    #[test]
    fn swap_moves_stanza_and_children_only() {
        let el: Element = "<iq xmlns='jabber:component:accept' type='error' id='a1' to='x@y'>\
             <query xmlns='jabber:iq:roster'/><error type='cancel'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            .parse()
            .unwrap();
        let client = from_component(&el);
        assert_eq!(client.ns(), "jabber:client");
        assert_eq!(client.attr("id"), Some("a1"));
        assert!(client.has_child("error", "jabber:client"));
        assert!(client.has_child("query", "jabber:iq:roster"));
        let iq = Iq::try_from(client.clone()).unwrap();
        assert!(matches!(iq, Iq::Error { .. }));
        let back = to_component(&client);
        assert_eq!(back, el);
    }

    #[test]
    fn ids_are_unique() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert!(a.starts_with("reg-"));
    }

    #[test]
    fn condition_names() {
        assert_eq!(
            condition_name(&DefinedCondition::ServiceUnavailable),
            "service-unavailable"
        );
        let err = StanzaError::new(
            xmpp_parsers::stanza_error::ErrorType::Cancel,
            DefinedCondition::Conflict,
            "en",
            "taken",
        );
        assert_eq!(error_text(&err), "conflict: taken");
        assert!(matches!(iq_error(&err), XmppError::Conflict));
    }
}
