//! Binding two JIDs as mutual contacts, unbinding them, reading rosters — in both modes.
//!
//! `c2s`: log in as each side (pooled sessions), set the roster items (nickname + group), then run
//! the subscription handshake A subscribe → B subscribed → B subscribe → A subscribed. Each step is
//! followed by a round trip on the sender's stream so the server has processed it before the peer
//! answers (no reliance on pre-approval), then both rosters are polled until both say `both`.
//! `privileged`: XEP-0356 roster get/set from the component to the users' bare JIDs, with
//! `subscription='both'` on each side; refused up front when the server did not grant the roster
//! permission, or when the server is known to fail privileged roster writes (`quirks`).

use std::time::Duration;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::roster::{Group, Item, Roster, Subscription};
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::c2s::Session;
use crate::component::Link;
use crate::quirks::PrivilegedRoster;
use crate::stanza::{error_text, iq_error, reply_payload};
use crate::{Party, RosterEntry, XmppError};

/// How long to wait between roster polls while a handshake settles.
const POLL: Duration = Duration::from_millis(30);

fn sub_name(s: &Subscription) -> &'static str {
    match s {
        Subscription::None => "none",
        Subscription::From => "from",
        Subscription::To => "to",
        Subscription::Both => "both",
        Subscription::Remove => "remove",
    }
}

/// Our view of roster items.
pub(crate) fn entries(roster: Roster) -> Vec<RosterEntry> {
    roster
        .items
        .into_iter()
        .map(|i| RosterEntry {
            jid: i.jid.to_string(),
            subscription: sub_name(&i.subscription).to_owned(),
            nickname: i.name.unwrap_or_default(),
            groups: i.groups.into_iter().map(|g| g.0).collect(),
        })
        .collect()
}

fn find<'a>(roster: &'a [RosterEntry], jid: &BareJid) -> Option<&'a RosterEntry> {
    roster.iter().find(|e| e.jid == jid.as_str())
}

fn is_both(roster: &[RosterEntry], jid: &BareJid) -> bool {
    find(roster, jid).is_some_and(|e| e.subscription == "both")
}

fn subscribed_to(roster: &[RosterEntry], jid: &BareJid) -> bool {
    find(roster, jid).is_some_and(|e| e.subscription == "to" || e.subscription == "both")
}

/// The roster item under which a user files `peer`.
pub(crate) fn item(peer_jid: &BareJid, peer: &Party, subscription: Subscription) -> Item {
    Item {
        jid: peer_jid.clone(),
        name: Some(peer.nickname.clone()).filter(|n| !n.is_empty()),
        subscription,
        ask: Default::default(),
        groups: if peer.group.is_empty() {
            vec![]
        } else {
            vec![Group(peer.group.clone())]
        },
        approved: None,
    }
}

fn remove_item(jid: &BareJid) -> Item {
    Item {
        jid: jid.clone(),
        name: None,
        subscription: Subscription::Remove,
        ask: Default::default(),
        groups: vec![],
        approved: None,
    }
}

fn roster_query(items: Vec<Item>) -> Roster {
    Roster { ver: None, items }
}

fn parse_roster(reply: Iq) -> Result<Vec<RosterEntry>, XmppError> {
    match reply_payload(reply) {
        Ok(Some(p)) => Roster::try_from(p)
            .map(entries)
            .map_err(|e| XmppError::Protocol(format!("roster: {e}"))),
        Ok(None) => Ok(vec![]),
        Err(e) => Err(XmppError::Refused(error_text(&e))),
    }
}

fn set_result(reply: Iq, removing: bool) -> Result<(), XmppError> {
    set_result_of(reply_payload(reply), removing)
}

/// What a roster removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Removed, or already gone (`item-not-found`).
    Done,
    /// Refused with `not-acceptable`: Openfire keeps items that a shared group puts in the
    /// roster (`Roster.deleteRosterItem` → `SharedGroupException`). Not ours to remove: the
    /// server's administrator made the pair contacts, and only the group can undo it.
    SharedGroup,
}

fn removal_result(reply: Iq, who: &BareJid, contact: &BareJid) -> Result<Removal, XmppError> {
    match reply_payload(reply) {
        Err(e) if e.defined_condition == DefinedCondition::NotAcceptable => {
            tracing::info!(
                user = %who,
                %contact,
                "the server keeps this roster item (not-acceptable: on Openfire it comes from a \
                 shared group); nothing of ours to remove"
            );
            Ok(Removal::SharedGroup)
        }
        other => set_result_of(other, true).map(|()| Removal::Done),
    }
}

fn set_result_of(
    reply: Result<Option<minidom::Element>, Box<xmpp_parsers::stanza_error::StanzaError>>,
    removing: bool,
) -> Result<(), XmppError> {
    match reply {
        Ok(_) => Ok(()),
        Err(e) if removing && e.defined_condition == DefinedCondition::ItemNotFound => Ok(()),
        Err(e) => Err(iq_error(&e)),
    }
}

/// The outcome of an unbind after both removals: [`XmppError::NotBound`] when the server kept
/// every item as a shared-group item (nothing of ours was there).
fn unbind_outcome(ra: Removal, rb: Removal) -> Result<(), XmppError> {
    if ra == Removal::SharedGroup && rb == Removal::SharedGroup {
        Err(XmppError::NotBound)
    } else {
        Ok(())
    }
}

// ---- c2s mode ----

/// The roster of the session's user.
pub(crate) async fn get(s: &mut Session) -> Result<Vec<RosterEntry>, XmppError> {
    parse_roster(s.iq(Iq::from_get("", roster_query(vec![]))).await?)
}

async fn set(s: &mut Session, item: Item) -> Result<(), XmppError> {
    let removing = item.subscription == Subscription::Remove;
    set_result(
        s.iq(Iq::from_set("", roster_query(vec![item]))).await?,
        removing,
    )
}

async fn presence(s: &mut Session, kind: PresenceType, to: &BareJid) -> Result<(), XmppError> {
    s.send(Presence::new(kind).with_to(Jid::from(to.clone())).into())
        .await?;
    s.sync().await
}

fn refused_by(s: &mut Session, peer: &BareJid) -> bool {
    s.take_inbox().iter().any(|el| {
        el.name() == "presence"
            && el.attr("type") == Some("unsubscribed")
            && el
                .attr("from")
                .and_then(|f| BareJid::new(f.split('/').next()?).ok())
                .as_ref()
                == Some(peer)
    })
}

/// The whole c2s handshake on two logged-in sessions.
pub(crate) async fn bind_c2s(
    sa: &mut Session,
    sb: &mut Session,
    a: (&BareJid, &Party),
    b: (&BareJid, &Party),
    timeout: Duration,
) -> Result<(), XmppError> {
    let (ja, pa) = a;
    let (jb, pb) = b;
    let ra = get(sa).await?;
    let rb = get(sb).await?;
    if is_both(&ra, jb) && is_both(&rb, ja) {
        return Err(XmppError::AlreadyBound);
    }
    set(sa, item(jb, pb, Subscription::None)).await?;
    set(sb, item(ja, pa, Subscription::None)).await?;
    if !subscribed_to(&ra, jb) {
        presence(sa, PresenceType::Subscribe, jb).await?;
        presence(sb, PresenceType::Subscribed, ja).await?;
    }
    if !subscribed_to(&rb, ja) {
        presence(sb, PresenceType::Subscribe, ja).await?;
        presence(sa, PresenceType::Subscribed, jb).await?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ra = get(sa).await?;
        let rb = get(sb).await?;
        if is_both(&ra, jb) && is_both(&rb, ja) {
            return Ok(());
        }
        if refused_by(sa, jb) || refused_by(sb, ja) {
            return Err(XmppError::SubscriptionRefused);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(a = %ja, b = %jb, "rosters did not reach 'both' in time");
            return Err(XmppError::Timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes each from the other's roster on two logged-in sessions.
pub(crate) async fn unbind_c2s(
    sa: &mut Session,
    sb: &mut Session,
    ja: &BareJid,
    jb: &BareJid,
) -> Result<(), XmppError> {
    let ra = get(sa).await?;
    let rb = get(sb).await?;
    if find(&ra, jb).is_none() && find(&rb, ja).is_none() {
        return Err(XmppError::NotBound);
    }
    let removed_a = remove(sa, ja, jb).await?;
    // A's removal makes the server cancel B's subscription too, but B keeps an item: remove it.
    let removed_b = remove(sb, jb, ja).await?;
    let ra = get(sa).await?;
    let rb = get(sb).await?;
    let left_a = removed_a == Removal::Done && find(&ra, jb).is_some();
    let left_b = removed_b == Removal::Done && find(&rb, ja).is_some();
    if left_a || left_b {
        return Err(XmppError::Protocol(
            "roster item still present after removal".into(),
        ));
    }
    unbind_outcome(removed_a, removed_b)
}

/// Removes `contact` from the roster of the session's user (`who`).
async fn remove(s: &mut Session, who: &BareJid, contact: &BareJid) -> Result<Removal, XmppError> {
    let reply = s
        .iq(Iq::from_set("", roster_query(vec![remove_item(contact)])))
        .await?;
    removal_result(reply, who, contact)
}

// ---- privileged mode (XEP-0356) ----

async fn require_roster_permission(link: &Link, write: bool) -> Result<(), XmppError> {
    let wait = link.config().timeout.min(Duration::from_secs(2));
    let privileges = link.privileges(wait).await;
    let granted = privileges
        .as_ref()
        .and_then(|p| p.perms.get("roster"))
        .map(String::as_str);
    let ok = match granted {
        Some("both") => true,
        Some("get") => !write,
        Some("set") => write,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let what = if write { "roster set" } else { "roster get" };
    Err(XmppError::Unsupported(format!(
        "the server did not grant the component the XEP-0356 {what} permission (granted: {})",
        granted.unwrap_or("none")
    )))
}

/// Fails at once when the link-up check found privileged roster writes broken (ejabberd 23.01,
/// see `quirks`), instead of failing half-way through a bind.
async fn require_working_roster_writes(link: &Link) -> Result<(), XmppError> {
    let wait = link.config().timeout.min(Duration::from_secs(3));
    match link.roster_writes(wait).await {
        PrivilegedRoster::Broken(why) => Err(XmppError::Unsupported(why)),
        PrivilegedRoster::Usable | PrivilegedRoster::Unknown => Ok(()),
    }
}

/// The roster of `jid`, read through the component.
pub(crate) async fn get_privileged(
    link: &Link,
    jid: &BareJid,
) -> Result<Vec<RosterEntry>, XmppError> {
    require_roster_permission(link, false).await?;
    let iq = Iq::from_get("", roster_query(vec![])).with_to(Jid::from(jid.clone()));
    parse_roster(link.iq(iq).await?)
}

async fn set_privileged(link: &Link, jid: &BareJid, item: Item) -> Result<(), XmppError> {
    let removing = item.subscription == Subscription::Remove;
    let iq = Iq::from_set("", roster_query(vec![item])).with_to(Jid::from(jid.clone()));
    set_result(link.iq(iq).await?, removing)
}

/// Sets `both` on both sides through the component.
pub(crate) async fn bind_privileged(
    link: &Link,
    a: (&BareJid, &Party),
    b: (&BareJid, &Party),
) -> Result<(), XmppError> {
    let (ja, pa) = a;
    let (jb, pb) = b;
    require_roster_permission(link, true).await?;
    require_working_roster_writes(link).await?;
    let ra = get_privileged(link, ja).await?;
    let rb = get_privileged(link, jb).await?;
    if is_both(&ra, jb) && is_both(&rb, ja) {
        return Err(XmppError::AlreadyBound);
    }
    set_privileged(link, ja, item(jb, pb, Subscription::Both)).await?;
    set_privileged(link, jb, item(ja, pa, Subscription::Both)).await?;
    let ra = get_privileged(link, ja).await?;
    let rb = get_privileged(link, jb).await?;
    if is_both(&ra, jb) && is_both(&rb, ja) {
        Ok(())
    } else {
        Err(XmppError::Protocol(
            "rosters do not say 'both' after privileged roster sets".into(),
        ))
    }
}

/// Removes each from the other's roster through the component.
pub(crate) async fn unbind_privileged(
    link: &Link,
    ja: &BareJid,
    jb: &BareJid,
) -> Result<(), XmppError> {
    require_roster_permission(link, true).await?;
    require_working_roster_writes(link).await?;
    let ra = get_privileged(link, ja).await?;
    let rb = get_privileged(link, jb).await?;
    if find(&ra, jb).is_none() && find(&rb, ja).is_none() {
        return Err(XmppError::NotBound);
    }
    let removed_a = remove_privileged(link, ja, jb).await?;
    let removed_b = remove_privileged(link, jb, ja).await?;
    unbind_outcome(removed_a, removed_b)
}

async fn remove_privileged(
    link: &Link,
    who: &BareJid,
    contact: &BareJid,
) -> Result<Removal, XmppError> {
    let iq =
        Iq::from_set("", roster_query(vec![remove_item(contact)])).with_to(Jid::from(who.clone()));
    removal_result(link.iq(iq).await?, who, contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_reply(condition: DefinedCondition) -> Iq {
        let error = xmpp_parsers::stanza_error::StanzaError::new(
            xmpp_parsers::stanza_error::ErrorType::Modify,
            condition,
            "en",
            "",
        );
        Iq::from_error("r1", error)
    }

    #[test]
    fn shared_group_removal_is_nothing_of_ours_and_other_errors_stay_errors() {
        let a = BareJid::new("a@example.test").unwrap();
        let b = BareJid::new("b@example.test").unwrap();
        let judged = |c| removal_result(error_reply(c), &a, &b);
        assert_eq!(
            judged(DefinedCondition::NotAcceptable).unwrap(),
            Removal::SharedGroup
        );
        assert_eq!(
            judged(DefinedCondition::ItemNotFound).unwrap(),
            Removal::Done
        );
        assert!(matches!(
            judged(DefinedCondition::Forbidden),
            Err(XmppError::Refused(_))
        ));
        assert!(matches!(
            unbind_outcome(Removal::SharedGroup, Removal::SharedGroup),
            Err(XmppError::NotBound)
        ));
        assert!(unbind_outcome(Removal::Done, Removal::SharedGroup).is_ok());
        assert!(unbind_outcome(Removal::Done, Removal::Done).is_ok());
    }

    #[test]
    fn roster_items_carry_nickname_and_group() {
        let peer = Party {
            node: "b".into(),
            password: "x".into(),
            nickname: "Kitchen".into(),
            group: "Device".into(),
        };
        let jid = BareJid::new("b@example.test").unwrap();
        let it = item(&jid, &peer, Subscription::Both);
        let el: minidom::Element = roster_query(vec![it]).into();
        let back = entries(Roster::try_from(el).unwrap());
        assert_eq!(
            back,
            vec![RosterEntry {
                jid: "b@example.test".into(),
                subscription: "both".into(),
                nickname: "Kitchen".into(),
                groups: vec!["Device".into()],
            }]
        );
        assert!(is_both(&back, &jid));
        assert!(subscribed_to(&back, &jid));
    }
}
