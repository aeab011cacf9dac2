//! Openfire's behaviours against a scripted peer that writes what Openfire writes, byte for byte
//! where the text matters. What it reproduces, and where Openfire does it (paths under
//! `xmppserver/src/main/java/org/jivesoftware/` in igniterealtime/Openfire):
//! - the stream header: XML declaration, double quotes, **no `version`**; `<handshake></handshake>`
//!   on success (`session/LocalComponentSession.createSession`, `authenticate`);
//! - a refusal before a session exists — the name already connected without `allowMultiple` in
//!   our header, the subdomain refused by `xmpp.component.permission`, no secret — is a header
//!   **without an id**, then the socket closes: no stream error, no `</stream:stream>`
//!   (`nio/NettyConnection.close` writes them only once `SessionManager.createComponentSession`
//!   made a session);
//! - several connections for one name when the header has `allowMultiple`; an IQ reply goes to
//!   the connection that sent the request (`LocalComponentSession.LocalExternalComponent.track`),
//!   anything else round-robin (`component/InternalComponentManager.RoutableComponents`);
//! - XEP-0133 add-user / delete-user (`commands/admin/user/AddUser`, `DeleteUser`): the forms'
//!   fields and titles, outcomes only as `<note>` in a completed command, in the server's
//!   language (`openfire_i18n*.properties`, English, German, French; `{0}` filled by Java's
//!   MessageFormat, which drops single quotes); `forbidden` for every command when the user store
//!   is read-only;
//! - `commands/AdHocCommandManager`: at most `xmpp.command.limit` (100) open sessions per
//!   requester, the 101st gets `not-allowed`; a session is removed only by its completion or a
//!   cancel, and a cancel is answered `bad-request` (cancel is not an offered action) after the
//!   session was removed; a lost reply leaves the session open;
//! - an idle component dropped when no *stanza* came for a while (whitespace does not count;
//!   Openfire: two reader-idle periods of `xmpp.component.idle`/2).

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minidom::rxml::{AsyncRawReader, RawEvent};
use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use sha1::{Digest, Sha1};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use xmpp::testkit::form_field as field;
use xmpp::{LinkState, Xmpp, XmppConfig, XmppError};

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const DOMAIN: &str = "example.test";
const COMPONENT: &str = "register.example.test";
const SECRET: &str = "openfire-secret";

fn cfg(addr: &str, timeout: Duration, keepalive: Duration) -> XmppConfig {
    crate::common::scripted_peer_config(addr, (DOMAIN, COMPONENT, SECRET), timeout, keepalive)
}

/// The server's language (`JiveGlobals.getLocale()`; a component has no session language).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locale {
    En,
    De,
    Fr,
}

/// The texts of `openfire_i18n.properties`, `_de` and `_fr` that the two commands use.
struct Texts {
    success: &'static str,
    user_exists: &'static str,
    /// `commands.admin.user.deleteuser.note.user-does-not-exist`, a MessageFormat pattern.
    user_missing: &'static str,
    add_title: &'static str,
    add_instruction: &'static str,
    delete_title: &'static str,
    delete_instruction: &'static str,
}

fn texts(locale: Locale) -> Texts {
    match locale {
        Locale::En => Texts {
            success: "Operation finished successfully.",
            user_exists: "User already exists.",
            user_missing: "User does not exist: {0}",
            add_title: "Adding a user",
            add_instruction: "Fill out this form to add a user.",
            delete_title: "Deleting one or more users",
            delete_instruction: "Fill out this form to delete users.",
        },
        // The German bundle leaves most of these untranslated.
        Locale::De => Texts {
            success: "Operation finished successfully.",
            user_exists: "Benutzer existiert bereits.",
            user_missing: "User does not exist: {0}",
            add_title: "Neuen Benutzer hinzufügen",
            add_instruction: "Fill out this form to add a user.",
            delete_title: "Deleting one or more users",
            delete_instruction: "Fill out this form to delete users.",
        },
        Locale::Fr => Texts {
            success: "L'opération s'est terminée avec succès.",
            user_exists: "L'utilisateur existe déjà.",
            user_missing: "L'utilisateur n'existe pas : {0}",
            add_title: "Ajouter un utilisateur",
            add_instruction: "Remplissez ce formulaire pour ajouter un utilisateur.",
            delete_title: "Supprimer un ou plusieurs utilisateurs",
            delete_instruction: "Remplissez ce formulaire pour supprimer des utilisateurs.",
        },
    }
}

/// Java's MessageFormat for patterns with `{0}` and quotes: a single quote opens or closes a
/// literal section and is dropped (`''` is one quote).
fn message_format(pattern: &str, arg: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => quoted = !quoted,
            '{' if !quoted => {
                // `{0}`: the only argument these patterns have.
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push_str(arg);
            }
            c => out.push(c),
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How the scripted Openfire is set up.
#[derive(Clone)]
struct Setup {
    locale: Locale,
    /// `xmpp.component.permission` lets this subdomain connect.
    permitted: bool,
    /// A secret is configured for the subdomain.
    secret: Option<&'static str>,
    /// `xmpp.command.limit`.
    command_limit: usize,
    /// The user provider is read-only (LDAP, read-only JDBC).
    read_only: bool,
    /// `xmpp.component.idle`: checked every idle/2 (see `connection`).
    idle_drop: Option<Duration>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            locale: Locale::En,
            permitted: true,
            secret: Some(SECRET),
            command_limit: 100,
            read_only: false,
            idle_drop: None,
        }
    }
}

enum Out {
    Raw(String),
    Close,
}

/// What the scripted Openfire remembers.
#[derive(Default)]
struct State {
    users: HashSet<String>,
    /// Open command sessions: id → (node, requester).
    sessions: HashMap<String, (String, String)>,
    max_open: usize,
    /// Executes refused with `not-allowed` (the limit was reached).
    refused_for_limit: usize,
    /// Sessions held by another requester-side party (another instance): released once this
    /// many executes were refused for the limit.
    release_held_after: Option<usize>,
    held: Vec<String>,
    /// (action, sessionid, reply condition or status) of every command received.
    actions: Vec<(String, Option<String>, String)>,
    /// Connections refused at the header.
    refused_at_header: usize,
    /// Replies the component sent to the server's own queries.
    replies: Vec<Element>,
    /// Reader-idle events that marked a connection idle, and idle closes.
    idle_marks: usize,
    idle_closes: usize,
    /// Another component holds the name (outside this test's instances).
    occupied: bool,
    /// Authenticated connections for the name: connection number → writer.
    connected: Vec<(u64, mpsc::UnboundedSender<Out>)>,
    accepted: u64,
    /// IQ get/set id → connection that sent it (`LocalExternalComponent.track`).
    tracked: HashMap<String, u64>,
    /// Commands received per connection.
    commands_from: HashMap<u64, usize>,
    /// Replies routed by the tracked id, and by round robin (no tracked id).
    routed_tracked: usize,
    routed_round_robin: usize,
    round_robin: usize,
    /// While closed, replies to `complete` wait (to pile sessions up).
    hold_completes: Option<watch::Receiver<bool>>,
    /// Node prefixes whose `complete` gets no reply (a lost reply; the session stays open).
    lost_replies: Vec<String>,
    /// Node prefixes whose `complete` closes the connection before answering.
    drop_on_complete: Vec<String>,
}

impl State {
    /// Each command request's action and the outcome it was answered with, in order.
    fn outcomes(&self) -> Vec<(&str, &str)> {
        let pairs = self.actions.iter();
        pairs.map(|a| (a.0.as_str(), a.2.as_str())).collect()
    }
}

/// Records when the last inbound byte came (whitespace included), like Netty's IdleStateHandler,
/// which sits before the XML decoder in Openfire's pipeline.
struct Watched {
    inner: OwnedReadHalf,
    last: Arc<Mutex<Instant>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            *self.last.lock().unwrap() = Instant::now();
        }
        r
    }
}

/// One component connection, seen from the server side.
struct Conn {
    reader: AsyncRawReader<BufReader<Watched>>,
    tree: TreeBuilder,
    w: Option<OwnedWriteHalf>,
}

impl Conn {
    /// The next top-level element inside the stream; `None` when the stream or socket ends.
    async fn next(&mut self) -> Option<Element> {
        loop {
            if self.tree.depth() == 1 {
                if let Some(el) = self.tree.unshift_child() {
                    return Some(el);
                }
            }
            let ev: Option<RawEvent> = poll_fn(|cx| Pin::new(&mut self.reader).poll_read(cx))
                .await
                .ok()?;
            self.tree.process_event(ev?).ok()?;
            if self.tree.depth() == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, raw: &str) {
        if let Some(w) = self.w.as_mut() {
            let _ = w.write_all(raw.as_bytes()).await;
        }
    }

    /// Closes the TCP connection (Openfire's `ChannelFutureListener.CLOSE`).
    async fn close(&mut self) {
        if let Some(mut w) = self.w.take() {
            let _ = w.shutdown().await;
        }
    }
}

/// Openfire's header (dom4j's writer: declaration, newline, double quotes, no `version`).
fn header(from: &str, id: Option<&str>) -> String {
    let mut h = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream \
         xmlns:stream=\"http://etherx.jabber.org/streams\" \
         xmlns=\"jabber:component:accept\" from=\"{from}\""
    );
    if let Some(id) = id {
        h += &format!(" id=\"{id}\"");
    }
    h + ">"
}

/// The scripted Openfire: address and shared state.
struct Openfire {
    addr: String,
    state: Arc<Mutex<State>>,
}

impl Openfire {
    async fn start(setup: Setup) -> Openfire {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                n += 1;
                tokio::spawn(connection(tcp, n, setup.clone(), st.clone()));
            }
        });
        Openfire { addr, state }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Waits until `cond` holds (polling), at most `within`.
    async fn wait_for(&self, within: Duration, cond: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond(&self.state.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    number: u64,
    setup: Setup,
    state: Arc<Mutex<State>>,
) {
    tcp.set_nodelay(true).unwrap();
    let (r, w) = tcp.into_split();
    let last_byte = Arc::new(Mutex::new(Instant::now()));
    let watched = Watched {
        inner: r,
        last: last_byte.clone(),
    };
    let mut conn = Conn {
        reader: AsyncRawReader::new(BufReader::new(watched)),
        tree: TreeBuilder::new(),
        w: Some(w),
    };
    while conn.tree.depth() == 0 {
        let Ok(Some(ev)) = poll_fn(|cx| Pin::new(&mut conn.reader).poll_read(cx)).await else {
            return;
        };
        conn.tree.process_event(ev).unwrap();
    }
    let top = conn.tree.top().unwrap();
    let to = top.attr("to").unwrap_or("").to_owned();
    let allow_multiple = top.attr("allowMultiple").is_some();
    assert_eq!(to, COMPONENT);
    // LocalComponentSession.createSession: the checks before a session exists.
    let refuse = {
        let st = state.lock().unwrap();
        !setup.permitted
            || setup.secret.is_none()
            || (!allow_multiple && (st.occupied || !st.connected.is_empty()))
    };
    if refuse {
        state.lock().unwrap().refused_at_header += 1;
        conn.send(&header(&to, None)).await;
        conn.close().await;
        return;
    }
    let id = format!("{:010x}", rand::random::<u64>() >> 24);
    conn.send(&header(&to, Some(&id))).await;
    let Some(hs) = conn.next().await else { return };
    assert_eq!(hs.name(), "handshake");
    let expected = hex::encode(Sha1::digest(
        format!("{id}{}", setup.secret.unwrap()).as_bytes(),
    ));
    if !hs.text().eq_ignore_ascii_case(&expected) {
        conn.send(
            "<stream:error><not-authorized xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             </stream:error></stream:stream>",
        )
        .await;
        conn.close().await;
        return;
    }
    conn.send("<handshake></handshake>").await;
    // From here on, everything this connection receives is written by its writer task, so that
    // replies can be routed to another connection of the same name.
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    {
        let mut st = state.lock().unwrap();
        st.connected.push((number, tx));
        st.accepted += 1;
    }
    let mut w = conn.w.take().unwrap();
    // InternalComponentManager.addComponent: a disco#info and a version query from its own
    // address, right after the handshake.
    for (qid, ns) in [
        ("of-disco", "http://jabber.org/protocol/disco#info"),
        ("of-version", "jabber:iq:version"),
    ] {
        send_to(
            &state,
            number,
            Out::Raw(format!(
                "<iq type=\"get\" id=\"{qid}-{number}\" from=\"component.{DOMAIN}\" to=\"{COMPONENT}\">\
                 <query xmlns=\"{ns}\"/></iq>"
            )),
        );
    }
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Raw(raw) => {
                    if w.write_all(raw.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Out::Close => break,
            }
        }
        let _ = w.shutdown().await;
    });
    // NettyIdleStateKeepAliveHandler: a reader-idle event after idle/2 without any byte marks
    // the connection; the next event while still marked closes it; a stanza clears the mark
    // (NettyConnectionHandler.channelRead0).
    let mut marked = false;
    let mut last_event = Instant::now();
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(10));
        tokio::select! {
            el = conn.next() => {
                let Some(el) = el else { break };
                marked = false;
                if handle(&state, &setup, number, el) == Handled::Closed {
                    break;
                }
            }
            _ = tick => {
                let Some(idle) = setup.idle_drop else { continue };
                let since = (*last_byte.lock().unwrap()).max(last_event);
                if since.elapsed() >= idle / 2 {
                    last_event = Instant::now();
                    if marked {
                        state.lock().unwrap().idle_closes += 1;
                        send_to(
                            &state,
                            number,
                            Out::Raw(
                                "<stream:error><connection-timeout xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
                                 <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\" xml:lang=\"en\">Connection has been idle.</text>\
                                 </stream:error></stream:stream>"
                                    .into(),
                            ),
                        );
                        break;
                    }
                    marked = true;
                    state.lock().unwrap().idle_marks += 1;
                }
            }
        }
    }
    {
        let mut st = state.lock().unwrap();
        if let Some(pos) = st.connected.iter().position(|(n, _)| *n == number) {
            let (_, tx) = st.connected.remove(pos);
            let _ = tx.send(Out::Close);
        }
    }
    let _ = writer.await;
}

fn send_to(state: &Mutex<State>, number: u64, out: Out) {
    let st = state.lock().unwrap();
    if let Some((_, tx)) = st.connected.iter().find(|(n, _)| *n == number) {
        let _ = tx.send(out);
    }
}

/// Routes a reply to a component like Openfire: to the connection that sent the request with
/// this id, else round robin over the connections of the name.
fn route_reply(state: &Mutex<State>, id: &str, raw: String) {
    let mut st = state.lock().unwrap();
    let target = match st.tracked.remove(id) {
        Some(n) => {
            st.routed_tracked += 1;
            Some(n)
        }
        None if !st.connected.is_empty() => {
            st.routed_round_robin += 1;
            st.round_robin += 1;
            Some(st.connected[st.round_robin % st.connected.len()].0)
        }
        None => None,
    };
    if let Some((_, tx)) = target.and_then(|t| st.connected.iter().find(|(n, _)| *n == t)) {
        let _ = tx.send(Out::Raw(raw));
    }
}

#[derive(PartialEq)]
enum Handled {
    Open,
    Closed,
}

fn iq_error(id: &str, child: &str, kind: &str, condition: &str) -> String {
    format!(
        "<iq type=\"error\" id=\"{id}\" from=\"{DOMAIN}\" to=\"{COMPONENT}\">{child}\
         <error type=\"{kind}\"><{condition} xmlns=\"{STANZAS}\"/></error></iq>"
    )
}

fn result(id: &str, command: &str) -> String {
    format!("<iq type=\"result\" id=\"{id}\" from=\"{DOMAIN}\" to=\"{COMPONENT}\">{command}</iq>")
}

/// A copy of the request's `<command/>` for an error reply (Openfire copies the child element).
fn command_copy(cmd: &Element) -> String {
    String::from(cmd)
}

fn handle(state: &Arc<Mutex<State>>, setup: &Setup, number: u64, el: Element) -> Handled {
    if el.name() != "iq" {
        return Handled::Open;
    }
    let id = el.attr("id").unwrap_or("").to_owned();
    let kind = el.attr("type").unwrap_or("");
    if kind == "result" || kind == "error" {
        state.lock().unwrap().replies.push(el);
        return Handled::Open;
    }
    state.lock().unwrap().tracked.insert(id.clone(), number);
    if el.has_child("ping", "urn:xmpp:ping") {
        route_reply(
            state,
            &id,
            format!("<iq type=\"result\" id=\"{id}\" from=\"{DOMAIN}\" to=\"{COMPONENT}\"/>"),
        );
        return Handled::Open;
    }
    let Some(cmd) = el.get_child("command", COMMANDS) else {
        route_reply(
            state,
            &id,
            iq_error(&id, "", "cancel", "service-unavailable"),
        );
        return Handled::Open;
    };
    let requester = el.attr("from").unwrap_or("").to_owned();
    *state
        .lock()
        .unwrap()
        .commands_from
        .entry(number)
        .or_default() += 1;
    let completes = cmd.attr("sessionid").is_some() && cmd.attr("action") != Some("cancel");
    let gate = state.lock().unwrap().hold_completes.clone();
    if let Some(mut gate) = gate.filter(|g| completes && !*g.borrow()) {
        // The completion waits for the gate, with its session still open.
        let (state, setup, cmd) = (state.clone(), setup.clone(), cmd.clone());
        tokio::spawn(async move {
            let _ = gate.wait_for(|open| *open).await;
            if let Reply::Now(raw) = command(&state, &setup, &requester, &id, "set", &cmd) {
                route_reply(&state, &id, raw);
            }
        });
        return Handled::Open;
    }
    match command(state, setup, &requester, &id, kind, cmd) {
        Reply::Now(raw) => route_reply(state, &id, raw),
        Reply::None => {}
        Reply::Drop => {
            send_to(state, number, Out::Close);
            return Handled::Closed;
        }
    }
    Handled::Open
}

enum Reply {
    Now(String),
    /// No reply (a lost reply, or Openfire's exception path).
    None,
    /// Close the connection without replying.
    Drop,
}

/// `AdHocCommandManager.process` for add-user and delete-user.
fn command(
    state: &Mutex<State>,
    setup: &Setup,
    requester: &str,
    id: &str,
    kind: &str,
    cmd: &Element,
) -> Reply {
    let mut st = state.lock().unwrap();
    let node = cmd.attr("node").unwrap_or("").to_owned();
    let action = cmd.attr("action").map(str::to_owned);
    let session = cmd.attr("sessionid").map(str::to_owned);
    let log = |st: &mut State, outcome: &str| {
        st.actions.push((
            action.clone().unwrap_or_else(|| "execute".into()),
            session.clone(),
            outcome.to_owned(),
        ))
    };
    if kind != "set" {
        log(&mut st, "bad-request");
        return Reply::Now(iq_error(id, &command_copy(cmd), "modify", "bad-request"));
    }
    let t = texts(setup.locale);
    let Some(sid) = session.clone() else {
        if !node.ends_with("#add-user") && !node.ends_with("#delete-user") {
            log(&mut st, "item-not-found");
            return Reply::Now(iq_error(id, &command_copy(cmd), "cancel", "item-not-found"));
        }
        // AddUser/DeleteUser.hasPermission: a component may, unless the store is read-only.
        if setup.read_only {
            log(&mut st, "forbidden");
            return Reply::Now(iq_error(id, &command_copy(cmd), "auth", "forbidden"));
        }
        let open = st.sessions.values().filter(|(_, r)| r == requester).count();
        if open + 1 > setup.command_limit {
            st.refused_for_limit += 1;
            if st
                .release_held_after
                .is_some_and(|n| st.refused_for_limit >= n)
            {
                let held = std::mem::take(&mut st.held);
                for h in held {
                    st.sessions.remove(&h);
                }
            }
            log(&mut st, "not-allowed");
            return Reply::Now(iq_error(id, &command_copy(cmd), "cancel", "not-allowed"));
        }
        let sid: String = format!("{:015x}", rand::random::<u64>() >> 4);
        st.sessions
            .insert(sid.clone(), (node.clone(), requester.to_owned()));
        st.max_open = st.max_open.max(st.sessions.len());
        log(&mut st, "executing");
        let form = if node.ends_with("#add-user") {
            format!(
                "<x xmlns=\"jabber:x:data\" type=\"form\"><title>{}</title><instructions>{}</instructions>\
                 <field var=\"FORM_TYPE\" type=\"hidden\"><value>http://jabber.org/protocol/admin</value></field>\
                 <field var=\"accountjid\" type=\"jid-single\" label=\"The Jabber ID for the account to be added\"><required/></field>\
                 <field var=\"password\" type=\"text-private\" label=\"The password for this account\"/>\
                 <field var=\"password-verify\" type=\"text-private\" label=\"Retype password\"/>\
                 <field var=\"email\" type=\"text-single\" label=\"Email address\"/>\
                 <field var=\"given_name\" type=\"text-single\" label=\"Given name\"/>\
                 <field var=\"surname\" type=\"text-single\" label=\"Family name\"/></x>",
                escape(t.add_title),
                escape(t.add_instruction)
            )
        } else {
            format!(
                "<x xmlns=\"jabber:x:data\" type=\"form\"><title>{}</title><instructions>{}</instructions>\
                 <field var=\"FORM_TYPE\" type=\"hidden\"><value>http://jabber.org/protocol/admin</value></field>\
                 <field var=\"accountjids\" type=\"jid-multi\" label=\"The Jabber ID(s) for the account to be deleted\"><required/></field></x>",
                escape(t.delete_title),
                escape(t.delete_instruction)
            )
        };
        return Reply::Now(result(
            id,
            &format!(
                "<command xmlns=\"{COMMANDS}\" sessionid=\"{sid}\" node=\"{node}\" status=\"executing\">\
                 {form}<actions execute=\"complete\"><complete/></actions></command>"
            ),
        ));
    };
    if !st.sessions.contains_key(&sid) {
        log(&mut st, "bad-request");
        return Reply::Now(iq_error(id, &command_copy(cmd), "modify", "bad-request"));
    }
    match action.as_deref() {
        Some("cancel") => {
            // The session goes, then the action is checked against the offered ones: bad-request.
            st.sessions.remove(&sid);
            log(&mut st, "bad-request");
            Reply::Now(iq_error(id, &command_copy(cmd), "modify", "bad-request"))
        }
        None | Some("execute") | Some("complete") => {
            let jid = field(cmd, "accountjid")
                .or_else(|| field(cmd, "accountjids"))
                .unwrap_or_default();
            if st.lost_replies.iter().any(|p| jid.starts_with(p.as_str())) {
                log(&mut st, "lost");
                return Reply::None;
            }
            if st
                .drop_on_complete
                .iter()
                .any(|p| jid.starts_with(p.as_str()))
            {
                log(&mut st, "dropped");
                return Reply::Drop;
            }
            if node.ends_with("#delete-user") && cmd.get_child("x", "jabber:x:data").is_none() {
                // DeleteUser iterates a missing field: the exception is logged, nothing is sent,
                // and the session stays open.
                log(&mut st, "no reply");
                return Reply::None;
            }
            st.sessions.remove(&sid);
            let (kind, text) = if node.ends_with("#add-user") {
                if st.users.insert(jid.clone()) {
                    ("info", t.success.to_owned())
                } else {
                    ("error", t.user_exists.to_owned())
                }
            } else if st.users.remove(&jid) {
                ("info", t.success.to_owned())
            } else {
                ("error", message_format(t.user_missing, &jid))
            };
            log(&mut st, kind);
            // The note is added first, the attributes after it (AdHocCommandManager).
            let raw = result(
                id,
                &format!(
                    "<command xmlns=\"{COMMANDS}\" sessionid=\"{sid}\" node=\"{node}\" \
                     status=\"completed\"><note type=\"{kind}\">{}</note></command>",
                    escape(&text)
                ),
            );
            Reply::Now(raw)
        }
        Some(_) => {
            log(&mut st, "bad-request");
            Reply::Now(iq_error(id, &command_copy(cmd), "modify", "bad-request"))
        }
    }
}

/// [`start`], then waits (3 s at most) for the link; the guard stops the link when dropped.
async fn linked(of: &Openfire, timeout: Duration) -> (Xmpp, tokio_util::sync::DropGuard) {
    let (x, shutdown) = start(of, timeout);
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    (x, shutdown.drop_guard())
}

fn start(of: &Openfire, timeout: Duration) -> (Xmpp, CancellationToken) {
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(
        cfg(&of.addr, timeout, Duration::from_secs(30)),
        shutdown.clone(),
    );
    (x, shutdown)
}

#[test]
fn message_format_drops_single_quotes_like_java() {
    assert_eq!(
        message_format("L'utilisateur n'existe pas : {0}", "a@b"),
        "Lutilisateur nexiste pas : a@b"
    );
    assert_eq!(
        message_format("User does not exist: {0}", "a@b"),
        "User does not exist: a@b"
    );
    assert_eq!(message_format("it''s {0}", "x"), "it's x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_header_without_version_is_accepted() {
    crate::init_tracing();
    let h = header(COMPONENT, Some("x"));
    let tag = &h[h.find("<stream:stream").unwrap()..];
    assert!(!tag.contains("version="), "{tag}");
    let of = Openfire::start(Setup::default()).await;
    let (x, _stop) = linked(&of, Duration::from_secs(2)).await;
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.accepted == 1)
            .await
    );
    assert_eq!(x.link_stats(), (1, 0));
    assert_eq!(x.link_state(), LinkState::Up);
}

/// Waits until the link has recorded an error.
async fn link_error(x: &Xmpp) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(err) = x.last_link_error() {
            return err;
        }
        assert!(Instant::now() < deadline, "no link error recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The three refusals Openfire makes before a session exists look the same on the wire: a
/// header without an id, then the socket closes. Each is diagnosed as a refusal at the header,
/// naming what to check, never as "no stream id".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_refuses_at_the_header_without_id_or_stream_error() {
    crate::init_tracing();
    let occupied = Setup::default();
    let not_permitted = Setup {
        permitted: false,
        ..Setup::default()
    };
    let no_secret = Setup {
        secret: None,
        ..Setup::default()
    };
    for (case, setup) in [
        ("name in use", occupied),
        ("not permitted", not_permitted),
        ("no secret", no_secret),
    ] {
        let of = Openfire::start(setup).await;
        of.with(|s| s.occupied = case == "name in use");
        let (x, shutdown) = start(&of, Duration::from_secs(2));
        let err = link_error(&x).await;
        assert!(
            err.contains("refused at the stream header"),
            "{case}: {err}"
        );
        for setting in ["allowMultiple", "xmpp.component.permission", "secret"] {
            assert!(err.contains(setting), "{case}: {err}");
        }
        assert!(!err.contains("no stream id"), "{case}: {err}");
        assert!(of.with(|s| s.refused_at_header) >= 1, "{case}");
        assert_eq!(x.link_stats().0, 0, "{case}");
        shutdown.cancel();
    }
}

/// The `xmpp` crate's log from info up, captured for this thread until the guard is dropped.
fn capture_log() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("xmpp=info")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Log lines written while a test runs on the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A name held by another connection is refused at every attempt; the reconnect loop says so
/// once for the outage (and once more when the link comes up), not once per attempt.
#[tokio::test(flavor = "current_thread")]
async fn openfire_header_refusal_is_logged_once_per_outage() {
    let (captured, _guard) = capture_log();
    let of = Openfire::start(Setup::default()).await;
    of.with(|s| s.occupied = true);
    let (x, shutdown) = start(&of, Duration::from_secs(2));
    let _stop = shutdown.drop_guard();
    assert!(
        of.wait_for(Duration::from_secs(10), |s| s.refused_at_header >= 4)
            .await,
        "the link did not retry"
    );
    of.with(|s| s.occupied = false);
    assert!(crate::wait_up(&x, Duration::from_secs(15)).await);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let refusals = text
        .lines()
        .filter(|l| l.contains("refused at the stream header"))
        .count();
    assert_eq!(refusals, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("component link up") && l.contains("failed_attempts")),
        "{text}"
    );
    let (_, failures) = x.link_stats();
    assert!(failures >= 4, "{failures}");
}

/// Openfire writes its notes in the server's language. Outcomes are judged by the note's type
/// and the JID in its text: the same results in English, German and French.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_notes_in_english_german_and_french_are_judged_by_structure() {
    crate::init_tracing();
    for locale in [Locale::En, Locale::De, Locale::Fr] {
        let of = Openfire::start(Setup {
            locale,
            ..Setup::default()
        })
        .await;
        let (x, shutdown) = start(&of, Duration::from_secs(2));
        assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
        // The add-user probe after link-up (execute, then a cancel) is not counted here.
        assert!(
            of.wait_for(Duration::from_secs(3), |s| s.sessions.is_empty())
                .await
        );
        of.with(|s| s.actions.clear());
        x.create_account("alice", "pw-123456")
            .await
            .unwrap_or_else(|e| panic!("{locale:?}: {e}"));
        let dup = x.create_account("alice", "pw-123456").await;
        assert!(
            matches!(dup, Err(XmppError::Conflict)),
            "{locale:?}: {dup:?}"
        );
        x.delete_account("alice", "x")
            .await
            .unwrap_or_else(|e| panic!("{locale:?}: {e}"));
        // Already gone: a cancel or an undo must see "not found", not a refusal.
        let gone = x.delete_account("alice", "x").await;
        assert!(
            matches!(gone, Err(XmppError::NotFound)),
            "{locale:?}: {gone:?}"
        );
        let notes: Vec<String> = of.with(|s| s.actions.iter().map(|a| a.2.clone()).collect());
        assert_eq!(
            notes,
            [
                "executing",
                "info",
                "executing",
                "error",
                "executing",
                "info",
                "executing",
                "error"
            ],
            "{locale:?}"
        );
        assert!(of.with(|s| s.sessions.is_empty()));
        shutdown.cancel();
    }
}

/// With a read-only user store (LDAP/AD, read-only JDBC) Openfire answers every add-user with
/// `forbidden`; the error says to make the store writable, and the first one after link-up is
/// logged as an error naming the setting, once.
#[tokio::test(flavor = "current_thread")]
async fn openfire_read_only_user_store_answers_forbidden() {
    let (captured, _guard) = capture_log();
    let of = Openfire::start(Setup {
        read_only: true,
        ..Setup::default()
    })
    .await;
    let (x, _stop) = linked(&of, Duration::from_secs(2)).await;
    for node in ["alice", "bob"] {
        let r = x.create_account(node, "pw-123456").await;
        assert!(
            matches!(&r, Err(XmppError::Refused(t)) if t.contains("read-only")),
            "{r:?}"
        );
    }
    assert!(of.with(|s| s.sessions.is_empty() && s.users.is_empty()));
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let logged: Vec<_> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("user store is read-only"))
        .collect();
    assert_eq!(logged.len(), 1, "{text}");
    assert!(logged[0].contains("provider.user.className"), "{text}");
}

/// Openfire answers a cancel with `bad-request` after removing the session. A lost reply (the
/// session stays open on Openfire) and every other outcome leave no session open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_answers_cancel_with_bad_request_and_no_session_stays_open() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    of.with(|s| s.lost_replies = vec!["lost".into()]);
    let (x, _stop) = linked(&of, Duration::from_millis(300)).await;
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.sessions.is_empty())
            .await
    );
    // The add-user probe after link-up (execute, then a cancel) is not counted here.
    of.with(|s| s.actions.clear());
    for round in 0..3 {
        let user = format!("user{round}");
        x.create_account(&user, "pw-123456")
            .await
            .expect("add-user");
        let dup = x.create_account(&user, "pw-123456").await;
        assert!(matches!(dup, Err(XmppError::Conflict)), "{dup:?}");
        let lost = x.create_account(&format!("lost{round}"), "pw-123456").await;
        assert!(matches!(lost, Err(XmppError::Timeout)), "{lost:?}");
        let ghost = x.delete_account(&format!("ghost{round}"), "x").await;
        assert!(matches!(ghost, Err(XmppError::NotFound)), "{ghost:?}");
        x.delete_account(&user, "x").await.expect("delete-user");
        let lost = x.delete_account(&format!("lost{round}"), "x").await;
        assert!(matches!(lost, Err(XmppError::Timeout)), "{lost:?}");
    }
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.sessions.is_empty())
            .await,
        "sessions left open: {:?}",
        of.with(|s| s.sessions.clone())
    );
    of.with(|s| {
        let cancels: Vec<_> = s.actions.iter().filter(|a| a.0 == "cancel").collect();
        assert_eq!(cancels.len(), 3 * 2, "{:?}", s.actions);
        assert!(cancels.iter().all(|a| a.2 == "bad-request"), "{cancels:?}");
        assert_eq!(s.refused_for_limit, 0);
    });
    assert_eq!(x.link_stats(), (1, 0));
}

/// Openfire refuses a requester's 101st open session with `not-allowed`. Sessions held by
/// someone else on the same name (another instance) make our execute refused until they end:
/// it is retried, not reported as a refused JID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_not_allowed_at_the_101st_session_is_retried() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    of.with(|s| {
        for i in 0..100 {
            let sid = format!("held-{i}");
            s.sessions.insert(
                sid.clone(),
                (
                    "http://jabber.org/protocol/admin#add-user".into(),
                    COMPONENT.into(),
                ),
            );
            s.held.push(sid);
        }
        s.release_held_after = Some(3);
    });
    let (x, _stop) = linked(&of, Duration::from_secs(5)).await;
    x.create_account("alice", "pw-123456")
        .await
        .expect("retried past the limit");
    of.with(|s| {
        assert_eq!(s.refused_for_limit, 3);
        assert!(s.sessions.is_empty(), "{:?}", s.sessions);
        assert!(s.users.contains("alice@example.test"));
    });
}

/// Runs `n` registrations at once; every one must succeed.
async fn register_all(x: &Xmpp, prefix: &str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let x = x.clone();
            let node = format!("{prefix}{i}");
            tokio::spawn(async move { x.create_account(&node, "pw-123456").await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        t.await
            .unwrap()
            .unwrap_or_else(|e| panic!("{prefix}{i}: {e}"));
    }
}

/// A burst of 150 registrations at once from a linked client (`command_sessions` from `sessions`,
/// or the default), while the peer holds every completion until the returned gate is opened.
async fn held_burst(
    sessions: Option<usize>,
) -> (
    Openfire,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
    tokio_util::sync::DropGuard,
) {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    let (gate, gate_rx) = watch::channel(false);
    of.with(|s| s.hold_completes = Some(gate_rx));
    let mut c = cfg(&of.addr, Duration::from_secs(10), Duration::from_secs(30));
    if let Some(n) = sessions {
        c.command_sessions = n;
    }
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(c, shutdown.clone());
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    let run = tokio::spawn(async move { register_all(&x, "burst", 150).await });
    (of, gate, run, shutdown.drop_guard())
}

/// 150 registrations at once against Openfire's 100-session limit: the queue keeps at most
/// `command_sessions` (40) open, so the limit is never hit, all succeed, none stays open. The
/// peer holds every completion until 40 sessions are open, so the cap is what is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_command_limit_is_never_reached_by_150_concurrent_registrations() {
    let (of, gate, run, _stop) = held_burst(None).await;
    assert!(
        of.wait_for(Duration::from_secs(10), |s| s.sessions.len() == 40)
            .await,
        "open sessions: {}",
        of.with(|s| s.sessions.len())
    );
    gate.send_replace(true);
    run.await.unwrap();
    of.with(|s| {
        assert_eq!(s.users.len(), 150);
        assert_eq!(s.max_open, 40);
        assert_eq!(s.refused_for_limit, 0);
        assert!(s.sessions.is_empty(), "{:?}", s.sessions);
    });
}

/// Without the queue (a cap above the limit), the same burst reaches Openfire's limit: the
/// 101st session is refused with `not-allowed` — and still every registration succeeds, through
/// the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_limit_reached_without_the_queue_is_retried() {
    let (of, gate, run, _stop) = held_burst(Some(150)).await;
    assert!(
        of.wait_for(Duration::from_secs(10), |s| s.refused_for_limit >= 1)
            .await,
        "the peer's limit was never reached"
    );
    assert_eq!(of.with(|s| s.sessions.len()), 100);
    gate.send_replace(true);
    run.await.unwrap();
    of.with(|s| {
        assert_eq!(s.users.len(), 150);
        assert_eq!(s.max_open, 100);
        assert!(s.sessions.is_empty(), "{:?}", s.sessions);
    });
}

/// Openfire keeps command sessions across a component's reconnection. A session whose link was
/// lost before its completion is cancelled after the next link-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_session_left_by_a_lost_link_is_cancelled_after_link_up() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    of.with(|s| s.drop_on_complete = vec!["drop".into()]);
    let (x, _stop) = linked(&of, Duration::from_secs(2)).await;
    let r = x.create_account("drop1", "pw-123456").await;
    assert!(matches!(r, Err(XmppError::LinkDown)), "{r:?}");
    assert_eq!(of.with(|s| s.sessions.len()), 1);
    assert!(
        of.wait_for(Duration::from_secs(5), |s| s.sessions.is_empty())
            .await,
        "the session was not cancelled after link-up"
    );
    assert!(x.link_stats().0 >= 2);
    x.create_account("alice", "pw-123456")
        .await
        .expect("works after");
}

/// Openfire accepts a second connection for a connected name only when its header carries
/// `allowMultiple`; replies go back to the connection that asked. Two instances, both ready,
/// registrations through both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_allow_multiple_lets_two_instances_share_the_name() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    // Without the attribute, the second instance is refused at the header.
    let (a, stop_a) = start(&of, Duration::from_secs(5));
    assert!(crate::wait_up(&a, Duration::from_secs(3)).await);
    let (b, stop_b) = start(&of, Duration::from_secs(5));
    let err = link_error(&b).await;
    assert!(err.contains("refused at the stream header"), "{err}");
    stop_b.cancel();
    stop_a.cancel();
    a.stopped().await;
    b.stopped().await;
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.connected.is_empty())
            .await
    );

    let multi = |of: &Openfire| {
        let mut c = cfg(&of.addr, Duration::from_secs(5), Duration::from_secs(30));
        c.allow_multiple = true;
        let shutdown = CancellationToken::new();
        (Xmpp::start(c, shutdown.clone()), shutdown)
    };
    let (a, stop_a) = multi(&of);
    let _stop_a = stop_a.drop_guard();
    let (b, stop_b) = multi(&of);
    let _stop_b = stop_b.drop_guard();
    assert!(crate::wait_up(&a, Duration::from_secs(3)).await);
    assert!(crate::wait_up(&b, Duration::from_secs(3)).await);
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.connected.len() == 2
            && s.sessions.is_empty()
            && s.routed_tracked == 3 * 2)
            .await,
        "{:?}",
        of.with(|s| s.actions.clone())
    );
    // Each instance's add-user probe after link-up (execute, then a cancel; the first instance
    // probed at its earlier link-up too) is not counted here.
    of.with(|s| {
        s.commands_from.clear();
        s.routed_tracked = 0;
        s.routed_round_robin = 0;
    });
    let (ra, rb) = tokio::join!(register_all(&a, "a", 30), register_all(&b, "b", 30));
    let _ = (ra, rb);
    of.with(|s| {
        assert_eq!(s.users.len(), 60);
        assert!(s.sessions.is_empty());
        // Both connections carried commands, and every reply was routed by its tracked id.
        assert_eq!(s.commands_from.len(), 2, "{:?}", s.commands_from);
        assert!(
            s.commands_from.values().all(|n| *n == 60),
            "{:?}",
            s.commands_from
        );
        assert_eq!(s.routed_tracked, 120);
        assert_eq!(s.routed_round_robin, 0);
    });
    assert_eq!(a.link_stats(), (1, 0));
    assert_eq!(b.link_stats(), (1, 0));
}

/// A scripted peer that drops a link idle for `idle`, and an `Xmpp` sending keepalives every
/// `keepalive`, its link up.
async fn idle_peer_linked(
    idle: Duration,
    keepalive: Duration,
) -> (Openfire, Xmpp, tokio_util::sync::DropGuard) {
    let of = Openfire::start(Setup {
        idle_drop: Some(idle),
        ..Setup::default()
    })
    .await;
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(
        cfg(&of.addr, Duration::from_secs(2), keepalive),
        shutdown.clone(),
    );
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    (of, x, shutdown.drop_guard())
}

/// Openfire marks a component idle after idle/2 without a byte and closes it at the next such
/// period unless a *stanza* came in between (whitespace restarts the timer, but does not clear
/// the mark). A keepalive longer than idle/2 but shorter than idle survives only because every
/// interval without a stanza ends with a ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_idle_close_is_prevented_by_a_keepalive_stanza() {
    crate::init_tracing();
    let idle = Duration::from_millis(400);
    let (of, x, _stop) = idle_peer_linked(idle, Duration::from_millis(300)).await;
    // Idle periods come and go: at least three marks, each cleared by a keepalive ping.
    assert!(
        of.wait_for(Duration::from_secs(10), |s| s.idle_marks >= 3)
            .await,
        "the peer never saw an idle period"
    );
    of.with(|s| assert_eq!(s.idle_closes, 0));
    assert_eq!(x.link_stats(), (1, 0), "{:?}", x.last_link_error());
    x.create_account("alice", "pw-123456")
        .await
        .expect("link works after idling");

    // Control: with the link silent for longer than idle (keepalive 60 s), the peer closes it.
    let (of, _y, _stop_ctl) = idle_peer_linked(idle, Duration::from_secs(60)).await;
    assert!(
        of.wait_for(Duration::from_secs(10), |s| s.idle_closes >= 1)
            .await,
        "the scripted peer did not close an idle link"
    );
}

/// Right after the handshake Openfire's component manager asks the component for disco#info and
/// its software version; both are answered: disco#info with the component identity (Openfire
/// lists it in its disco items), the version with `service-unavailable` (ignored by Openfire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_disco_info_and_version_queries_after_handshake_are_answered() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    let (_x, _stop) = linked(&of, Duration::from_secs(2)).await;
    assert!(
        of.wait_for(Duration::from_secs(5), |s| s.replies.len() >= 2)
            .await,
        "the component did not answer the server's queries"
    );
    of.with(|s| {
        let disco = s
            .replies
            .iter()
            .find(|r| r.attr("id").is_some_and(|i| i.starts_with("of-disco")))
            .expect("a disco#info reply");
        assert_eq!(disco.attr("type"), Some("result"));
        assert_eq!(disco.attr("to"), Some("component.example.test"));
        let identity = disco
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
            .expect("an identity");
        assert_eq!(identity.attr("category"), Some("component"));
        let version = s
            .replies
            .iter()
            .find(|r| r.attr("id").is_some_and(|i| i.starts_with("of-version")))
            .expect("a version reply");
        // No software version is offered: `service-unavailable`, which Openfire ignores
        // (`InternalComponentManager.process` handles only `result` replies).
        assert_eq!(version.attr("type"), Some("error"));
        let error = version
            .get_child("error", "jabber:component:accept")
            .expect("an error");
        assert!(error.has_child("service-unavailable", STANZAS), "{error:?}");
    });
}

/// Openfire checks `AddUser.hasPermission` when add-user is requested: with a read-only user
/// store the execute itself is answered `forbidden`, before any form. The probe after each
/// link-up and `register check` (`Xmpp::probe`) find it that way, create nothing, and name the
/// Openfire setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_read_only_user_store_is_found_by_a_probe_that_creates_nothing() {
    crate::init_tracing();
    let of = Openfire::start(Setup {
        read_only: true,
        ..Setup::default()
    })
    .await;
    let (x, shutdown) = start(&of, Duration::from_secs(2));
    let _stop = shutdown.drop_guard();
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    let found = x.account_commands();
    let xmpp::AccountCommands::Refused(why) = &found else {
        panic!("{found:?}");
    };
    for needle in ["forbidden", "read-only", "provider.user.className"] {
        assert!(why.contains(needle), "{why}");
    }
    let checked = x.probe().await;
    assert!(
        matches!(&checked, Err(XmppError::Refused(t)) if t.contains("before any form") && t.contains("provider.user.className")),
        "{checked:?}"
    );
    of.with(|s| {
        assert!(s.users.is_empty() && s.sessions.is_empty());
        assert_eq!(
            s.outcomes(),
            [("execute", "forbidden"), ("execute", "forbidden")]
        );
    });
}

/// With a writable store the same probe gets the add-user form and cancels the session at once
/// (Openfire answers the cancel `bad-request` after removing the session): nothing is created
/// and no session stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_writable_user_store_probe_cancels_its_session() {
    crate::init_tracing();
    let of = Openfire::start(Setup::default()).await;
    let (x, shutdown) = start(&of, Duration::from_secs(2));
    let _stop = shutdown.drop_guard();
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    assert_eq!(x.account_commands(), xmpp::AccountCommands::Allowed);
    assert!(
        of.wait_for(Duration::from_secs(3), |s| s.sessions.is_empty()
            && s.actions.len() == 2)
            .await,
        "{:?}",
        of.with(|s| s.actions.clone())
    );
    of.with(|s| {
        assert!(s.users.is_empty());
        assert_eq!(
            s.outcomes(),
            [("execute", "executing"), ("cancel", "bad-request")]
        );
    });
}
