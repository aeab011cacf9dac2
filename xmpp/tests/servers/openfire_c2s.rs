//! Openfire's client side (c2s) as `register` meets it in `binding = "c2s"` mode, scripted:
//! what it does with rosters that shared groups fill. Paths under
//! `xmppserver/src/main/java/org/jivesoftware/` in igniterealtime/Openfire:
//! - stream features: STARTTLS offered but not required (`xmpp.client.tls.policy` = `optional`),
//!   the default SASL mechanisms that work without extra setup — PLAIN, DIGEST-MD5, CRAM-MD5,
//!   SCRAM-SHA-1, no SCRAM-SHA-256 (`net/SASLAuthentication`); after SASL, resource binding
//!   (`session/LocalClientSession`);
//! - the roster result (`roster/Roster.getReset`): personal items plus one item per member of a
//!   shared group the user sees, `subscription='both'`, the group's display name among the
//!   item's groups, and a `ver` (`xmpp.roster.versioning.enabled`);
//! - a removal of an item that belongs to a shared group (`Roster.deleteRosterItem` throws
//!   `SharedGroupException`, `handler/IQRosterHandler.handleIQ` answers it): an IQ error
//!   `not-acceptable` (type `modify`) carrying a copy of the request's query, and nothing
//!   changes; a removal of an item not in the roster is `item-not-found`;
//! - a personal removal cancels the subscriptions both ways and leaves the contact's item with
//!   `subscription='none'` (`IQRosterHandler.removeItem`, OF-720);
//! - a roster set ignores `subscription` values other than `remove`
//!   (`IQRosterHandler.ignoreNonRemoveSubscriptionValues`).
//!
//! Roster pushes are not sent: `register` polls the roster and only acknowledges pushes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use sasl::common::scram::Sha1;
use sasl::common::{ChannelBinding, Identity};
use sasl::secret::Pbkdf2Sha1;
use sasl::server::mechanisms::Scram;
use sasl::server::{Mechanism, Provider, ProviderError, Response as SaslResponse};
use tokio::io::BufStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{accept_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp::{AccountsMode, BindingMode, C2sTls, Party, Xmpp, XmppConfig, XmppError};
use xmpp_parsers::bind::BindFeature;
use xmpp_parsers::sasl::{Auth, Challenge, Failure, Response, Success};
use xmpp_parsers::starttls::StartTls;
use xmpp_parsers::stream_features::StreamFeatures;

const DOMAIN: &str = "example.test";
const ROSTER: &str = "jabber:iq:roster";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

/// Openfire's default mechanisms that need no extra setup (no anonymous login, no Kerberos,
/// no client certificates, no shared secret).
const MECHANISMS: [&str; 4] = ["PLAIN", "DIGEST-MD5", "CRAM-MD5", "SCRAM-SHA-1"];

type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// One subscription state of a roster item (`roster/RosterItem.SubType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    None,
    To,
    From,
    Both,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::None => "none",
            Sub::To => "to",
            Sub::From => "from",
            Sub::Both => "both",
        }
    }
}

/// A personal roster item (the `ofRoster` row).
#[derive(Debug, Clone)]
struct Item {
    name: Option<String>,
    groups: Vec<String>,
    sub: Sub,
}

#[derive(Default)]
pub(crate) struct C2sState {
    /// node → password.
    passwords: HashMap<String, String>,
    /// owner bare JID → contact bare JID → personal item.
    rosters: HashMap<String, BTreeMap<String, Item>>,
    /// Shared groups shown to their own members: (display name, member bare JIDs).
    shared: Vec<(String, Vec<String>)>,
    /// Connected resources: full JID → writer.
    sessions: Vec<(String, mpsc::UnboundedSender<Element>)>,
    /// SASL mechanisms clients chose.
    pub(crate) mechanisms_used: Vec<String>,
    /// Roster sets other than removals.
    pub(crate) roster_sets: usize,
    /// Removals answered `not-acceptable`: (owner, contact).
    pub(crate) refused_removals: Vec<(String, String)>,
    /// Removals that removed an item.
    pub(crate) removed: usize,
}

impl C2sState {
    fn shares_group(&self, owner: &str, contact: &str) -> Vec<String> {
        self.shared
            .iter()
            .filter(|(_, members)| {
                members.iter().any(|m| m == owner) && members.iter().any(|m| m == contact)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// `Roster.getReset`: personal items, plus shared-group members (`both`, with the group's
    /// display name added to the item's groups).
    fn roster_of(&self, owner: &str) -> Vec<(String, Item)> {
        let mut items: BTreeMap<String, Item> =
            self.rosters.get(owner).cloned().unwrap_or_default();
        for (display, members) in &self.shared {
            if !members.iter().any(|m| m == owner) {
                continue;
            }
            for m in members.iter().filter(|m| *m != owner) {
                let it = items.entry(m.clone()).or_insert_with(|| Item {
                    name: m.split('@').next().map(str::to_owned),
                    groups: vec![],
                    sub: Sub::Both,
                });
                it.sub = Sub::Both;
                if !it.groups.contains(display) {
                    it.groups.push(display.clone());
                }
            }
        }
        items.into_iter().collect()
    }

    fn item_mut(&mut self, owner: &str, contact: &str) -> &mut Item {
        self.rosters
            .entry(owner.to_owned())
            .or_default()
            .entry(contact.to_owned())
            .or_insert(Item {
                name: None,
                groups: vec![],
                sub: Sub::None,
            })
    }

    fn deliver(&self, to_bare: &str, el: &Element) {
        for (full, tx) in &self.sessions {
            if full.split('/').next() == Some(to_bare) {
                let _ = tx.send(el.clone());
            }
        }
    }
}

/// The scripted Openfire c2s listener.
pub(crate) struct OpenfireC2s {
    pub(crate) addr: String,
    pub(crate) state: Arc<Mutex<C2sState>>,
}

impl OpenfireC2s {
    pub(crate) async fn start() -> OpenfireC2s {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(C2sState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(client(tcp, st.clone()));
            }
        });
        OpenfireC2s { addr, state }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut C2sState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// An account in the (writable, default) user store.
    pub(crate) fn add_user(&self, node: &str, password: &str) {
        self.with(|s| s.passwords.insert(node.to_owned(), password.to_owned()));
    }

    /// A shared group shown to its own members (`sharedRoster.showInRoster = onlyGroup`).
    pub(crate) fn add_shared_group(&self, display: &str, nodes: &[&str]) {
        let members = nodes.iter().map(|n| format!("{n}@{DOMAIN}")).collect();
        self.with(|s| s.shared.push((display.to_owned(), members)));
    }
}

/// The user store as SASL sees it.
struct Users(Arc<Mutex<C2sState>>);

impl Provider<Pbkdf2Sha1> for Users {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha1, ProviderError> {
        let Identity::Username(user) = identity else {
            return Err(ProviderError::AuthenticationFailed);
        };
        let password = self.0.lock().unwrap().passwords.get(user).cloned();
        let password = password.ok_or(ProviderError::AuthenticationFailed)?;
        // Openfire stores a salt and 4096 iterations per user (`user/ScramUtils`).
        Pbkdf2Sha1::derive(&password, format!("salt-{user}").as_bytes(), 4096)
            .map_err(ProviderError::DeriveError)
    }
}

sasl::impl_validator_using_provider!(Users, Pbkdf2Sha1);

fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(60),
        response_timeout: Duration::from_secs(60),
    }
}

fn features(before_auth: bool) -> StreamFeatures {
    let mut f = StreamFeatures::default();
    if before_auth {
        f.starttls = Some(StartTls { required: false });
        f.sasl_mechanisms = MECHANISMS.iter().map(|m| m.to_string()).collect();
        f.in_band_registration = true;
    } else {
        f.bind = Some(BindFeature { required: false });
        f.others.push(
            Element::builder("session", "urn:ietf:params:xml:ns:xmpp-session")
                .append(Element::builder(
                    "optional",
                    "urn:ietf:params:xml:ns:xmpp-session",
                ))
                .build(),
        );
    }
    f
}

fn header(id: &str) -> StreamHeader<'static> {
    StreamHeader {
        from: Some(DOMAIN.into()),
        to: None,
        id: Some(id.to_owned().into()),
    }
}

/// One client connection: SASL (SCRAM-SHA-1 only is scripted: the client prefers it), restart,
/// bind, then stanzas.
async fn client(tcp: TcpStream, state: Arc<Mutex<C2sState>>) {
    tcp.set_nodelay(true).unwrap();
    let Ok(accepted) = accept_stream(BufStream::new(tcp), "jabber:client", timeouts()).await else {
        return;
    };
    let id = format!("{:08x}", rand::random::<u32>());
    let Ok(pending) = accepted.send_header(header(&id)).await else {
        return;
    };
    let Ok(mut stream) = pending.send_features::<Element>(&features(true)).await else {
        return;
    };
    let Some(user) = authenticate(&mut stream, &state).await else {
        return;
    };
    let Ok(accepted) = stream.accept_reset(&Success { data: user.1 }).await else {
        return;
    };
    let user = user.0;
    let Ok(pending) = accepted.send_header(header(&format!("{id}-2"))).await else {
        return;
    };
    let Ok(mut stream) = pending.send_features::<Element>(&features(false)).await else {
        return;
    };
    let bare = format!("{user}@{DOMAIN}");
    let (tx, mut rx) = mpsc::unbounded_channel::<Element>();
    let mut full = None;
    loop {
        tokio::select! {
            Some(el) = rx.recv() => {
                if stream.send(&el).await.is_err() {
                    break;
                }
            }
            el = stream.next() => match el {
                Some(Ok(el)) => {
                    let reply = stanza(&state, &bare, &mut full, &tx, el);
                    if let Some(reply) = reply {
                        if stream.send(&reply).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Err(ReadError::SoftTimeout)) => {}
                _ => break,
            }
        }
    }
    if let Some(full) = full {
        state.lock().unwrap().sessions.retain(|(f, _)| *f != full);
    }
    let _ = stream.shutdown().await;
}

/// SCRAM-SHA-1 against the user store; `(node, server-final)` on success.
async fn authenticate(
    stream: &mut Stream,
    state: &Arc<Mutex<C2sState>>,
) -> Option<(String, Vec<u8>)> {
    let el = stream.next().await?.ok()?;
    let name = el.attr("mechanism").unwrap_or("").to_owned();
    let auth = Auth::try_from(el).ok()?;
    state.lock().unwrap().mechanisms_used.push(name.clone());
    let not_authorized = Failure {
        defined_condition: xmpp_parsers::sasl::DefinedCondition::NotAuthorized,
        texts: Default::default(),
    };
    if name != "SCRAM-SHA-1" {
        // Only the mechanism register picks is scripted.
        let _ = stream.send(&not_authorized).await;
        return None;
    }
    // The sasl crate's server accepts a client's `n,,` header (no channel binding, as register
    // sends over plaintext) only when configured with some binding; with no binding data the
    // client's `c=biws` then matches.
    let mut scram: Scram<Sha1, Users> =
        Scram::new(Users(state.clone()), ChannelBinding::TlsUnique(vec![]));
    let mut data = auth.data;
    loop {
        match scram.respond(&data) {
            Ok(SaslResponse::Proceed(challenge)) => {
                stream.send(&Challenge { data: challenge }).await.ok()?;
                let el = stream.next().await?.ok()?;
                data = Response::try_from(el).ok()?.data;
            }
            Ok(SaslResponse::Success(Identity::Username(user), last)) => return Some((user, last)),
            _ => {
                let _ = stream.send(&not_authorized).await;
                return None;
            }
        }
    }
}

fn iq_result(id: &str, to: &str, payload: Option<Element>) -> Element {
    let mut b = Element::builder("iq", "jabber:client")
        .attr(attr("type"), "result")
        .attr(attr("id"), id)
        .attr(attr("to"), to);
    if let Some(p) = payload {
        b = b.append(p);
    }
    b.build()
}

fn attr(name: &str) -> minidom::rxml::NcName {
    minidom::rxml::NcName::try_from(name).unwrap()
}

/// An IQ error as `IQRosterHandler` builds it: the request's child copied, then the error.
fn iq_error(id: &str, to: &str, child: Option<&Element>, kind: &str, condition: &str) -> Element {
    let mut b = Element::builder("iq", "jabber:client")
        .attr(attr("type"), "error")
        .attr(attr("id"), id)
        .attr(attr("to"), to);
    if let Some(c) = child {
        b = b.append(c.clone());
    }
    b.append(
        Element::builder("error", "jabber:client")
            .attr(attr("type"), kind)
            .append(Element::builder(condition, STANZAS)),
    )
    .build()
}

fn roster_query(items: &[(String, Item)], ver: Option<&str>) -> Element {
    let mut q = Element::builder("query", ROSTER);
    if let Some(v) = ver {
        q = q.attr(attr("ver"), v);
    }
    for (jid, it) in items {
        let mut i = Element::builder("item", ROSTER)
            .attr(attr("jid"), jid.as_str())
            .attr(attr("subscription"), it.sub.name());
        if let Some(n) = &it.name {
            i = i.attr(attr("name"), n.as_str());
        }
        for g in &it.groups {
            i = i.append(Element::builder("group", ROSTER).append(g.as_str()));
        }
        q = q.append(i);
    }
    q.build()
}

/// Handles one stanza from the client; returns the reply to send, if any.
fn stanza(
    state: &Arc<Mutex<C2sState>>,
    bare: &str,
    full: &mut Option<String>,
    tx: &mpsc::UnboundedSender<Element>,
    el: Element,
) -> Option<Element> {
    let me = full.clone().unwrap_or_else(|| bare.to_owned());
    match el.name() {
        "iq" => {
            let id = el.attr("id").unwrap_or("").to_owned();
            let kind = el.attr("type").unwrap_or("");
            if kind == "result" || kind == "error" {
                return None;
            }
            if let Some(b) = el.get_child("bind", BIND) {
                let resource = b
                    .get_child("resource", BIND)
                    .map(|r| r.text())
                    .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
                let jid = format!("{bare}/{resource}");
                state
                    .lock()
                    .unwrap()
                    .sessions
                    .push((jid.clone(), tx.clone()));
                *full = Some(jid.clone());
                let payload = Element::builder("bind", BIND)
                    .append(Element::builder("jid", BIND).append(jid.as_str()))
                    .build();
                return Some(iq_result(&id, &jid, Some(payload)));
            }
            if el.has_child("ping", "urn:xmpp:ping") {
                return Some(iq_result(&id, &me, None));
            }
            let Some(query) = el.get_child("query", ROSTER) else {
                return Some(iq_error(&id, &me, None, "cancel", "service-unavailable"));
            };
            let mut st = state.lock().unwrap();
            if kind == "get" {
                let items = st.roster_of(bare);
                let ver = format!("{}", items.len() + st.removed + st.roster_sets);
                return Some(iq_result(&id, &me, Some(roster_query(&items, Some(&ver)))));
            }
            let items: Vec<&Element> = query.children().filter(|c| c.is("item", ROSTER)).collect();
            if items.len() != 1 {
                return Some(iq_error(&id, &me, None, "modify", "bad-request"));
            }
            let item = items[0];
            let contact = item.attr("jid").unwrap_or("").to_lowercase();
            if item.attr("subscription") == Some("remove") {
                // Roster.deleteRosterItem: an item from a shared group cannot be removed.
                if !st.shares_group(bare, &contact).is_empty() {
                    st.refused_removals.push((bare.to_owned(), contact));
                    return Some(iq_error(&id, &me, Some(query), "modify", "not-acceptable"));
                }
                let removed = st
                    .rosters
                    .get_mut(bare)
                    .and_then(|r| r.remove(&contact))
                    .is_some();
                if !removed {
                    return Some(iq_error(&id, &me, None, "cancel", "item-not-found"));
                }
                st.removed += 1;
                // OF-720: the contact keeps its item, with the subscriptions cancelled.
                if let Some(it) = st.rosters.get_mut(&contact).and_then(|r| r.get_mut(bare)) {
                    it.sub = Sub::None;
                }
                return Some(iq_result(&id, &me, None));
            }
            let groups: Vec<String> = item
                .children()
                .filter(|g| g.is("group", ROSTER))
                .map(|g| g.text())
                .collect();
            let exists = st
                .rosters
                .get(bare)
                .is_some_and(|r| r.contains_key(&contact));
            let shared_names: Vec<String> = st.shared.iter().map(|(n, _)| n.clone()).collect();
            if !exists && groups.iter().any(|g| shared_names.contains(g)) {
                // Roster.provideRosterItem: no new item may be filed under a shared group.
                return Some(iq_error(&id, &me, Some(query), "modify", "not-acceptable"));
            }
            st.roster_sets += 1;
            let it = st.item_mut(bare, &contact);
            it.name = item.attr("name").map(str::to_owned);
            it.groups = groups;
            Some(iq_result(&id, &me, None))
        }
        "presence" => {
            let to = el
                .attr("to")
                .map(|t| t.split('/').next().unwrap_or("").to_lowercase())?;
            let kind = el.attr("type").unwrap_or("");
            let mut st = state.lock().unwrap();
            match kind {
                "subscribe" => {
                    st.item_mut(bare, &to);
                }
                "subscribed" => {
                    let mine = st.item_mut(bare, &to);
                    mine.sub = match mine.sub {
                        Sub::None | Sub::From => Sub::From,
                        Sub::To | Sub::Both => Sub::Both,
                    };
                    let theirs = st.item_mut(&to, bare);
                    theirs.sub = match theirs.sub {
                        Sub::None | Sub::To => Sub::To,
                        Sub::From | Sub::Both => Sub::Both,
                    };
                }
                _ => return None,
            }
            let forwarded = Element::builder("presence", "jabber:client")
                .attr(attr("type"), kind)
                .attr(attr("from"), bare)
                .attr(attr("to"), to.as_str())
                .build();
            st.deliver(&to, &forwarded);
            None
        }
        _ => None,
    }
}

/// A config whose c2s side is the scripted Openfire; the component link is not used here.
fn cfg(c2s_addr: &str) -> XmppConfig {
    XmppConfig {
        domain: DOMAIN.into(),
        component: "register.example.test".into(),
        component_addr: "127.0.0.1:1".into(),
        component_secret: "unused".into(),
        c2s_addr: c2s_addr.into(),
        c2s_tls: C2sTls::Off,
        tls_ca_file: None,
        allow_plain_without_tls: false,
        accounts: AccountsMode::Component,
        binding: BindingMode::C2s,
        timeout: Duration::from_secs(3),
        session_idle: Duration::from_secs(30),
        keepalive: Duration::from_secs(30),
        allow_multiple: false,
        command_sessions: 40,
    }
}

fn start(c2s: &OpenfireC2s) -> (Xmpp, tokio_util::sync::DropGuard) {
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(cfg(&c2s.addr), shutdown.clone());
    (x, shutdown.drop_guard())
}

fn party(node: &str, nickname: &str) -> Party {
    crate::party(node, &format!("pw-{node}"), nickname, "Device")
}

fn users(c2s: &OpenfireC2s, nodes: &[&str]) -> Vec<Party> {
    nodes
        .iter()
        .map(|n| {
            c2s.add_user(n, &format!("pw-{n}"));
            party(n, &format!("{n}-nick"))
        })
        .collect()
}

/// Openfire offers PLAIN, DIGEST-MD5, CRAM-MD5 and SCRAM-SHA-1 (no SCRAM-SHA-256) and STARTTLS
/// as optional: a login with TLS off picks SCRAM-SHA-1, never PLAIN without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_default_sasl_mechanisms_log_in_with_scram_sha_1() {
    crate::init_tracing();
    let c2s = OpenfireC2s::start().await;
    c2s.add_user("alice", "pw-alice");
    xmpp::check_login(&cfg(&c2s.addr), "alice", "pw-alice")
        .await
        .expect("login");
    let wrong = xmpp::check_login(&cfg(&c2s.addr), "alice", "wrong").await;
    assert!(matches!(wrong, Err(XmppError::AuthFailed)), "{wrong:?}");
    c2s.with(|s| assert_eq!(s.mechanisms_used, ["SCRAM-SHA-1", "SCRAM-SHA-1"]));
}

/// Contacts a shared group makes `both` are in each other's roster with the group's display
/// name: a bind of such a pair is reported as already bound, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_shared_group_contacts_answer_a_bind_as_already_bound() {
    crate::init_tracing();
    let c2s = OpenfireC2s::start().await;
    let p = users(&c2s, &["alice", "bob"]);
    c2s.add_shared_group("Staff", &["alice", "bob"]);
    let (x, _stop) = start(&c2s);
    let roster = x.roster(&p[0]).await.expect("roster");
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(roster[0].jid, "bob@example.test");
    assert_eq!(roster[0].subscription, "both");
    assert_eq!(roster[0].groups, ["Staff"]);
    let r = x.bind(&p[0], &p[1]).await;
    assert!(matches!(r, Err(XmppError::AlreadyBound)), "{r:?}");
    c2s.with(|s| assert_eq!(s.roster_sets, 0));
}

/// Openfire refuses to remove a shared-group item with `not-acceptable`. Unbind takes that as
/// "nothing of ours to remove": one attempt per side, no loop, reported as not bound — which
/// the service counts as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_shared_group_item_removal_is_not_acceptable_and_unbind_does_not_loop() {
    crate::init_tracing();
    let c2s = OpenfireC2s::start().await;
    let p = users(&c2s, &["alice", "bob"]);
    c2s.add_shared_group("Staff", &["alice", "bob"]);
    let (x, _stop) = start(&c2s);
    let r = x.unbind(&p[0], &p[1]).await;
    assert!(matches!(r, Err(XmppError::NotBound)), "{r:?}");
    c2s.with(|s| {
        assert_eq!(
            s.refused_removals,
            [
                (
                    "alice@example.test".to_owned(),
                    "bob@example.test".to_owned()
                ),
                (
                    "bob@example.test".to_owned(),
                    "alice@example.test".to_owned()
                ),
            ]
        );
        assert_eq!(s.removed, 0);
    });
    // Still mutual through the group: nothing changed on the server.
    let roster = x.roster(&p[1]).await.expect("roster");
    assert!(
        roster
            .iter()
            .any(|e| e.jid == "alice@example.test" && e.subscription == "both"),
        "{roster:?}"
    );
}

/// A pair bound by register (personal items) next to a shared group: bind and unbind work on
/// the personal items, and a pair whose items are personal *and* shared (bound before the
/// group was created) is refused removal on both sides, which unbind reports as not bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_personal_items_are_bound_and_removed_next_to_a_shared_group() {
    crate::init_tracing();
    let c2s = OpenfireC2s::start().await;
    let p = users(&c2s, &["alice", "bob", "carol", "dave"]);
    c2s.add_shared_group("Staff", &["alice", "bob"]);
    let (x, _stop) = start(&c2s);
    x.bind(&p[2], &p[3]).await.expect("bind carol and dave");
    let roster = x.roster(&p[2]).await.expect("roster");
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(roster[0].subscription, "both");
    assert_eq!(roster[0].nickname, "dave-nick");
    assert_eq!(roster[0].groups, ["Device"]);
    x.unbind(&p[2], &p[3]).await.expect("unbind carol and dave");
    assert!(x.roster(&p[2]).await.unwrap().is_empty());
    assert!(x.roster(&p[3]).await.unwrap().is_empty());
    c2s.with(|s| assert_eq!(s.removed, 2));

    // Carol and Dave bound again, then put in a shared group: their items are shared too.
    x.bind(&p[2], &p[3]).await.expect("bind again");
    c2s.add_shared_group("Lab", &["carol", "dave"]);
    let r = x.unbind(&p[2], &p[3]).await;
    assert!(matches!(r, Err(XmppError::NotBound)), "{r:?}");
    c2s.with(|s| {
        assert_eq!(s.refused_removals.len(), 2, "{:?}", s.refused_removals);
        assert_eq!(s.removed, 2);
    });
}
