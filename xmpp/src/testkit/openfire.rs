//! A scripted Openfire for tests that need both of its sides on one user store: the component
//! side (XEP-0114, then XEP-0133 add-user / delete-user as `commands/admin/user/AddUser` and
//! `DeleteUser` answer them) and the client side (c2s) as `register` meets it in
//! `binding = "c2s"` mode. Openfire itself cannot run on these machines; the byte-level
//! behaviours of its component port (a header without `version`, refusals at the header,
//! localised notes, the command-session limit, idle closes) are scripted in the `servers` test
//! binary (`xmpp/tests/servers/openfire.rs`). Framing here is tokio-xmpp's. Paths under
//! `xmppserver/src/main/java/org/jivesoftware/` in igniterealtime/Openfire.
//!
//! Component side:
//! - a second connection for the connected name is refused with a header without an id, then
//!   the socket closes (`LocalComponentSession.createSession`; `allowMultiple` is not scripted
//!   here);
//! - after the handshake, a `disco#info` and a `jabber:iq:version` get from
//!   `component.<domain>` (`component/InternalComponentManager.addComponent`);
//! - add-user / delete-user in two steps: the execute is answered with the form (`forbidden` when
//!   the user store is read-only: `AddUser.hasPermission`), the completion with a `<note/>`
//!   (`info` "Operation finished successfully.", `error` "User already exists." /
//!   "User does not exist: {jid}"), a cancel with `bad-request` after the session is removed
//!   (`commands/AdHocCommandManager`).
//!
//! Client side:
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
use std::net::SocketAddr;
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
use xmpp_parsers::bind::BindFeature;

use crate::testkit::{Endpoints, Process, TestServer};
use crate::{AccountsMode, BindingMode, C2sTls, XmppConfig};
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
pub struct OpenfireState {
    /// The user store: node → password.
    users: HashMap<String, String>,
    /// The user store is read-only (LDAP/AD, JDBC): `AddUser.hasPermission` is false.
    pub read_only: bool,
    /// Open command sessions: id → node.
    commands_open: HashMap<String, String>,
    /// (action, outcome) of every command the component sent.
    pub commands: Vec<(String, String)>,
    /// Replies the component sent to the server's own queries (disco#info, version).
    pub replies: Vec<Element>,
    /// Component connections open for the name.
    components_connected: usize,
    /// Component connections refused at the header (the name was connected).
    pub refused_at_header: usize,
    /// owner bare JID → contact bare JID → personal item.
    rosters: HashMap<String, BTreeMap<String, Item>>,
    /// Shared groups shown to their own members: (display name, member bare JIDs).
    shared: Vec<(String, Vec<String>)>,
    /// Connected resources: full JID → writer.
    sessions: Vec<(String, mpsc::UnboundedSender<Element>)>,
    /// SASL mechanisms clients chose.
    pub mechanisms_used: Vec<String>,
    /// Roster sets other than removals.
    pub roster_sets: usize,
    /// Removals answered `not-acceptable`: (owner, contact).
    pub refused_removals: Vec<(String, String)>,
    /// Removals that removed an item.
    pub removed: usize,
}

impl OpenfireState {
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

const COMPONENT: &str = "register.example.test";
const SECRET: &str = "openfire-secret";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_COMPONENT: &str = "jabber:component:accept";

/// How the scripted Openfire is set up.
#[derive(Debug, Clone, Default)]
pub struct OpenfireOptions {
    /// The user provider is read-only (LDAP/AD, JDBC): every add-user is `forbidden`.
    pub read_only: bool,
}

/// The scripted Openfire: a component port and a c2s port on loopback, one user store.
pub struct Openfire {
    endpoints: Endpoints,
    state: Arc<Mutex<OpenfireState>>,
    stop: CancellationToken,
}

impl Openfire {
    /// Listens on two free loopback ports. Must be called inside a tokio runtime.
    pub fn start(opts: OpenfireOptions) -> Openfire {
        let state = Arc::new(Mutex::new(OpenfireState {
            read_only: opts.read_only,
            ..OpenfireState::default()
        }));
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            l.set_nonblocking(true).expect("non-blocking");
            l
        };
        let (component, c2s) = (bind(), bind());
        let mut of = Openfire {
            endpoints: Endpoints {
                domain: DOMAIN.into(),
                component: COMPONENT.into(),
                secret: SECRET.into(),
                component_addr: component.local_addr().expect("address"),
                c2s_addr: c2s.local_addr().expect("address"),
                ca_file: None,
            },
            state,
            stop: CancellationToken::new(),
        };
        of.listen(component, c2s);
        of
    }

    fn listen(&mut self, component: std::net::TcpListener, c2s: std::net::TcpListener) {
        self.stop = CancellationToken::new();
        for (listener, is_component) in [(component, true), (c2s, false)] {
            let listener = TcpListener::from_std(listener).expect("inside a tokio runtime");
            let (state, stop) = (self.state.clone(), self.stop.clone());
            tokio::spawn(async move {
                loop {
                    let tcp = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = listener.accept() => match r {
                            Ok((tcp, _)) => tcp,
                            Err(_) => return,
                        },
                    };
                    let (state, stop) = (state.clone(), stop.clone());
                    if is_component {
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = component_conn(tcp, state) => {}
                            }
                        });
                    } else {
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = client(tcp, state) => {}
                            }
                        });
                    }
                }
            });
        }
    }

    /// Reads or changes the server's state.
    pub fn with<R>(&self, f: impl FnOnce(&mut OpenfireState) -> R) -> R {
        f(&mut self.state.lock().expect("lock"))
    }

    /// An account in the user store.
    pub fn add_user(&self, node: &str, password: &str) {
        self.with(|s| s.users.insert(node.to_owned(), password.to_owned()));
    }

    /// Whether the user store holds `node`.
    pub fn has_user(&self, node: &str) -> bool {
        self.with(|s| s.users.contains_key(node))
    }

    /// Command sessions open on the server.
    pub fn open_sessions(&self) -> usize {
        self.with(|s| s.commands_open.len())
    }

    /// A shared group shown to its own members (`sharedRoster.showInRoster = onlyGroup`).
    pub fn add_shared_group(&self, display: &str, nodes: &[&str]) {
        let members = nodes.iter().map(|n| format!("{n}@{DOMAIN}")).collect();
        self.with(|s| s.shared.push((display.to_owned(), members)));
    }
}

impl Drop for Openfire {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestServer for Openfire {
    fn name(&self) -> &'static str {
        "openfire (scripted)"
    }
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
    fn process(&mut self) -> Option<&mut Process> {
        None
    }
    fn config(&self, accounts: AccountsMode, binding: BindingMode) -> XmppConfig {
        XmppConfig {
            c2s_tls: C2sTls::Off,
            allow_plain_without_tls: false,
            timeout: Duration::from_secs(5),
            ..self.endpoints.config(accounts, binding)
        }
    }
    fn is_running(&mut self) -> bool {
        !self.stop.is_cancelled()
    }
    fn log(&self) -> String {
        String::new()
    }
    /// Closes both ports and every connection; the user store is kept.
    fn stop(&mut self) {
        self.stop.cancel();
    }
    /// Listens again on the same ports, with the same user store.
    fn restart(&mut self) {
        self.stop.cancel();
        let bind = |addr: SocketAddr| {
            let l = std::net::TcpListener::bind(addr).expect("the same port again");
            l.set_nonblocking(true).expect("non-blocking");
            l
        };
        let (component, c2s) = (
            bind(self.endpoints.component_addr),
            bind(self.endpoints.c2s_addr),
        );
        self.listen(component, c2s);
    }
}

/// Counts an authenticated-or-authenticating component connection until dropped.
struct Connected(Arc<Mutex<OpenfireState>>);

impl Drop for Connected {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.lock() {
            st.components_connected -= 1;
        }
    }
}

/// One component connection: header, handshake, the server's two queries, then commands.
async fn component_conn(tcp: TcpStream, state: Arc<Mutex<OpenfireState>>) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut accepted) = accept_stream(BufStream::new(tcp), NS_COMPONENT, timeouts()).await
    else {
        return;
    };
    if accepted.take_header().to.as_deref() != Some(COMPONENT) {
        return;
    }
    // LocalComponentSession.createSession: a name already connected (this peer never sees
    // `allowMultiple`) is refused with a header without an id, then the socket closes.
    let held = {
        let mut st = state.lock().expect("lock");
        if st.components_connected > 0 {
            st.refused_at_header += 1;
            None
        } else {
            st.components_connected += 1;
            Some(Connected(state.clone()))
        }
    };
    let Some(_connected) = held else {
        let refusal = StreamHeader {
            from: Some(COMPONENT.into()),
            to: None,
            id: None,
        };
        let _ = accepted.send_header(refusal).await;
        return;
    };
    let id = format!("{:010x}", rand::random::<u64>() >> 24);
    let Ok(pending) = accepted.send_header(header(&id)).await else {
        return;
    };
    let Ok(mut stream) = pending
        .send_features::<Element>(&StreamFeatures::default())
        .await
    else {
        return;
    };
    let Some(Ok(hs)) = stream.next().await else {
        return;
    };
    let expected = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(
        format!("{id}{SECRET}").as_bytes(),
    ));
    if !hs.is("handshake", NS_COMPONENT) || !hs.text().eq_ignore_ascii_case(&expected) {
        return;
    }
    if stream
        .send(&Element::builder("handshake", NS_COMPONENT).build())
        .await
        .is_err()
    {
        return;
    }
    for (qid, ns) in [
        ("of-disco", "http://jabber.org/protocol/disco#info"),
        ("of-version", "jabber:iq:version"),
    ] {
        let q = Element::builder("iq", NS_COMPONENT)
            .attr(attr("type"), "get")
            .attr(attr("id"), qid)
            .attr(attr("from"), format!("component.{DOMAIN}"))
            .attr(attr("to"), COMPONENT)
            .append(Element::builder("query", ns))
            .build();
        if stream.send(&q).await.is_err() {
            return;
        }
    }
    loop {
        match stream.next().await {
            Some(Ok(el)) => {
                if let Some(reply) = component_stanza(&state, el) {
                    if stream.send(&reply).await.is_err() {
                        return;
                    }
                }
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            _ => return,
        }
    }
}

fn component_reply(
    id: &str,
    kind: &str,
    child: Option<Element>,
    error: Option<(&str, &str)>,
) -> Element {
    let mut b = Element::builder("iq", NS_COMPONENT)
        .attr(attr("type"), kind)
        .attr(attr("id"), id)
        .attr(attr("from"), DOMAIN)
        .attr(attr("to"), COMPONENT);
    if let Some(c) = child {
        b = b.append(c);
    }
    if let Some((kind, condition)) = error {
        b = b.append(
            Element::builder("error", NS_COMPONENT)
                .attr(attr("type"), kind)
                .append(Element::builder(condition, STANZAS)),
        );
    }
    b.build()
}

/// The first value of the data-form field `var` in a request's `<command/>` (XEP-0004).
pub fn form_field(cmd: &Element, var: &str) -> Option<String> {
    let x = cmd.get_child("x", "jabber:x:data")?;
    let f = x
        .children()
        .find(|f| f.name() == "field" && f.attr("var") == Some(var))?;
    f.children().find(|v| v.name() == "value").map(|v| v.text())
}

/// `AdHocCommandManager.process` for add-user and delete-user, in English.
fn component_stanza(state: &Mutex<OpenfireState>, el: Element) -> Option<Element> {
    if el.name() != "iq" {
        return None;
    }
    let id = el.attr("id").unwrap_or("").to_owned();
    let kind = el.attr("type").unwrap_or("");
    let mut st = state.lock().expect("lock");
    if kind == "result" || kind == "error" {
        st.replies.push(el);
        return None;
    }
    if el.has_child("ping", "urn:xmpp:ping") {
        return Some(component_reply(&id, "result", None, None));
    }
    let Some(cmd) = el.get_child("command", COMMANDS) else {
        return Some(component_reply(
            &id,
            "error",
            None,
            Some(("cancel", "service-unavailable")),
        ));
    };
    let node = cmd.attr("node").unwrap_or("").to_owned();
    let action = cmd.attr("action").unwrap_or("execute").to_owned();
    let log = |st: &mut OpenfireState, outcome: &str| {
        st.commands.push((action.clone(), outcome.to_owned()))
    };
    // An error reply that carries the command back, logged under its condition.
    let refuse = |st: &mut OpenfireState, kind: &str, condition: &str| {
        log(st, condition);
        let copy = Some(cmd.clone());
        Some(component_reply(&id, "error", copy, Some((kind, condition))))
    };
    let known = node.ends_with("#add-user") || node.ends_with("#delete-user");
    let Some(sid) = cmd.attr("sessionid").map(str::to_owned) else {
        if !known {
            return refuse(&mut st, "cancel", "item-not-found");
        }
        if st.read_only {
            return refuse(&mut st, "auth", "forbidden");
        }
        let sid = format!("{:015x}", rand::random::<u64>() >> 4);
        st.commands_open.insert(sid.clone(), node.clone());
        log(&mut st, "executing");
        let fields = if node.ends_with("#add-user") {
            "<field var='accountjid' type='jid-single' label='The Jabber ID for the account to be added'><required/></field>\
             <field var='password' type='text-private' label='The password for this account'/>\
             <field var='password-verify' type='text-private' label='Retype password'/>\
             <field var='email' type='text-single' label='Email address'/>\
             <field var='given_name' type='text-single' label='Given name'/>\
             <field var='surname' type='text-single' label='Family name'/>"
        } else {
            "<field var='accountjids' type='jid-multi' label='The Jabber ID(s) for the account to be deleted'><required/></field>"
        };
        let (title, instructions) = if node.ends_with("#add-user") {
            ("Adding a user", "Fill out this form to add a user.")
        } else {
            (
                "Deleting one or more users",
                "Fill out this form to delete users.",
            )
        };
        let command: Element = format!(
            "<command xmlns='{COMMANDS}' sessionid='{sid}' node='{node}' status='executing'>\
             <x xmlns='jabber:x:data' type='form'><title>{title}</title><instructions>{instructions}</instructions>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field>\
             {fields}</x><actions execute='complete'><complete/></actions></command>"
        )
        .parse()
        .expect("a well-formed form");
        return Some(component_reply(&id, "result", Some(command), None));
    };
    // The session is removed, then the action is checked against the offered ones: a cancel is
    // refused like an unknown session.
    if st.commands_open.remove(&sid).is_none() || action == "cancel" {
        return refuse(&mut st, "modify", "bad-request");
    }
    let (note_kind, text) = if node.ends_with("#add-user") {
        let jid = form_field(cmd, "accountjid").unwrap_or_default();
        let user = jid.split('@').next().unwrap_or("").to_owned();
        let password = form_field(cmd, "password").unwrap_or_default();
        match st.users.entry(user) {
            std::collections::hash_map::Entry::Occupied(_) => {
                ("error", "User already exists.".to_owned())
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(password);
                ("info", "Operation finished successfully.".to_owned())
            }
        }
    } else {
        let jid = form_field(cmd, "accountjids").unwrap_or_default();
        let user = jid.split('@').next().unwrap_or("").to_owned();
        if st.users.remove(&user).is_some() {
            st.rosters.remove(&jid);
            ("info", "Operation finished successfully.".to_owned())
        } else {
            ("error", format!("User does not exist: {jid}"))
        }
    };
    log(&mut st, note_kind);
    let command = Element::builder("command", COMMANDS)
        .attr(attr("sessionid"), sid.as_str())
        .attr(attr("node"), node.as_str())
        .attr(attr("status"), "completed")
        .append(
            Element::builder("note", COMMANDS)
                .attr(attr("type"), note_kind)
                .append(text.as_str()),
        )
        .build();
    Some(component_reply(&id, "result", Some(command), None))
}
/// The user store as SASL sees it.
struct Users(Arc<Mutex<OpenfireState>>);

impl Provider<Pbkdf2Sha1> for Users {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha1, ProviderError> {
        let Identity::Username(user) = identity else {
            return Err(ProviderError::AuthenticationFailed);
        };
        let password = self.0.lock().unwrap().users.get(user).cloned();
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
async fn client(tcp: TcpStream, state: Arc<Mutex<OpenfireState>>) {
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
    state: &Arc<Mutex<OpenfireState>>,
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
    state: &Arc<Mutex<OpenfireState>>,
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
