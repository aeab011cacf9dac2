//! Openfire's behaviours (XMPP-NOTES.md, Openfire's LocalComponentSession and admin commands)
//! against a scripted peer that writes what Openfire writes, byte for byte where it matters:
//! - the stream header: `<?xml version='1.0' encoding='UTF-8'?>`, double quotes, **no `version`**;
//!   `<handshake></handshake>` on success;
//! - a refused connection (name in use, no secret): a header **without an id**, then the stream
//!   error;
//! - XEP-0133 outcomes as `<note type='info|error'>` in a completed command; no reply at all to
//!   bad input;
//! - a limit on open command sessions per requester (Openfire: 100, expired lazily; here 3);
//! - an idle component dropped after a silence (Openfire: 6 minutes; here a few hundred ms).

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use minidom::rxml::{AsyncRawReader, RawEvent};
use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use xmpp::{AccountsMode, BindingMode, C2sTls, LinkState, Xmpp, XmppConfig, XmppError};

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const COMPONENT: &str = "register.example.test";
const SECRET: &str = "openfire-secret";
/// Openfire's open-session limit per requester (100), scaled down.
const MAX_SESSIONS: usize = 3;

fn cfg(addr: &str, timeout: Duration, keepalive: Duration) -> XmppConfig {
    XmppConfig {
        domain: "example.test".into(),
        component: COMPONENT.into(),
        component_addr: addr.into(),
        component_secret: SECRET.into(),
        c2s_addr: "127.0.0.1:1".into(),
        c2s_tls: C2sTls::Off,
        tls_ca_file: None,
        allow_plain_without_tls: true,
        accounts: AccountsMode::Component,
        binding: BindingMode::C2s,
        timeout,
        session_idle: Duration::from_secs(30),
        keepalive,
    }
}

/// Openfire's header for an accepted component (LocalComponentSession.createSession).
fn header(id: Option<&str>) -> String {
    let mut h = String::from(
        "<?xml version='1.0' encoding='UTF-8'?><stream:stream \
         xmlns:stream=\"http://etherx.jabber.org/streams\" \
         xmlns=\"jabber:component:accept\" from=\"register.example.test\"",
    );
    if let Some(id) = id {
        h += &format!(" id=\"{id}\"");
    }
    h + ">"
}

fn stream_error(condition: &str) -> String {
    format!(
        "<stream:error><{condition} xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    )
}

/// Counts the time of the last inbound byte (whitespace keepalives included).
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
    w: OwnedWriteHalf,
    last_in: Arc<Mutex<Instant>>,
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
        let _ = self.w.write_all(raw.as_bytes()).await;
    }

    fn idle_for(&self) -> Duration {
        self.last_in.lock().unwrap().elapsed()
    }
}

/// Accepts a connection and reads the component's stream header.
async fn accept(listener: &TcpListener) -> Conn {
    let (tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (r, w) = tcp.into_split();
    let last_in = Arc::new(Mutex::new(Instant::now()));
    let watched = Watched {
        inner: r,
        last: last_in.clone(),
    };
    let mut conn = Conn {
        reader: AsyncRawReader::new(BufReader::new(watched)),
        tree: TreeBuilder::new(),
        w,
        last_in,
    };
    while conn.tree.depth() == 0 {
        let ev = poll_fn(|cx| Pin::new(&mut conn.reader).poll_read(cx))
            .await
            .unwrap()
            .expect("a stream header");
        conn.tree.process_event(ev).unwrap();
    }
    let to = conn
        .tree
        .top()
        .and_then(|s| s.attr("to"))
        .map(str::to_owned);
    assert_eq!(to.as_deref(), Some(COMPONENT));
    conn
}

/// Accepts and authenticates like Openfire; panics on a wrong digest.
async fn accept_authenticated(listener: &TcpListener, id: &str) -> Conn {
    let mut conn = accept(listener).await;
    conn.send(&header(Some(id))).await;
    let hs = conn.next().await.expect("a handshake");
    assert_eq!(hs.name(), "handshake");
    let expected = hex::encode(Sha1::digest(format!("{id}{SECRET}").as_bytes()));
    assert!(hs.text().eq_ignore_ascii_case(&expected), "wrong digest");
    conn.send("<handshake></handshake>").await;
    conn
}

/// What the scripted Openfire remembers.
#[derive(Default)]
struct State {
    users: HashSet<String>,
    /// Open command sessions: id → node.
    sessions: HashMap<String, String>,
    max_open: usize,
    refused_for_limit: usize,
    counter: u64,
    /// (action, sessionid) of every command received.
    actions: Vec<(String, Option<String>)>,
}

fn field(cmd: &Element, var: &str) -> Option<String> {
    let x = cmd.get_child("x", "jabber:x:data")?;
    let f = x
        .children()
        .find(|f| f.name() == "field" && f.attr("var") == Some(var))?;
    f.children().find(|v| v.name() == "value").map(|v| v.text())
}

fn result(id: &str, command: &str) -> String {
    format!(
        "<iq type=\"result\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\">{command}</iq>"
    )
}

fn note(node: &str, session: &str, kind: &str, text: &str) -> String {
    format!(
        "<command xmlns=\"{COMMANDS}\" sessionid=\"{session}\" node=\"{node}\" status=\"completed\">\
         <note type=\"{kind}\">{text}</note></command>"
    )
}

/// Openfire's answer to one stanza, or `None` (it sends nothing).
fn answer(state: &Mutex<State>, el: &Element) -> Option<String> {
    let id = el.attr("id").unwrap_or("").to_owned();
    if el.name() != "iq" {
        return None;
    }
    if el.has_child("ping", "urn:xmpp:ping") {
        return Some(format!(
            "<iq type=\"result\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\"/>"
        ));
    }
    let Some(cmd) = el.get_child("command", COMMANDS) else {
        return Some(format!(
            "<iq type=\"error\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\">\
             <error type=\"cancel\"><service-unavailable xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
        ));
    };
    let mut st = state.lock().unwrap();
    let node = cmd.attr("node").unwrap_or("").to_owned();
    let action = cmd.attr("action").unwrap_or("execute").to_owned();
    let session = cmd.attr("sessionid").map(str::to_owned);
    st.actions.push((action.clone(), session.clone()));
    match (action.as_str(), session) {
        ("execute", None) => {
            if st.sessions.len() >= MAX_SESSIONS {
                st.refused_for_limit += 1;
                return Some(format!(
                    "<iq type=\"error\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\">\
                     <error type=\"wait\"><resource-constraint xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
                ));
            }
            st.counter += 1;
            let sid = format!("of-session-{}", st.counter);
            st.sessions.insert(sid.clone(), node.clone());
            st.max_open = st.max_open.max(st.sessions.len());
            let form = if node.ends_with("#add-user") {
                "<x xmlns=\"jabber:x:data\" type=\"form\"><field var=\"FORM_TYPE\" type=\"hidden\">\
                 <value>http://jabber.org/protocol/admin</value></field>\
                 <field var=\"accountjid\" type=\"jid-single\"><required/></field>\
                 <field var=\"password\" type=\"text-private\"/>\
                 <field var=\"password-verify\" type=\"text-private\"/></x>"
            } else {
                "<x xmlns=\"jabber:x:data\" type=\"form\"><field var=\"FORM_TYPE\" type=\"hidden\">\
                 <value>http://jabber.org/protocol/admin</value></field>\
                 <field var=\"accountjids\" type=\"jid-multi\"><required/></field></x>"
            };
            Some(result(
                &id,
                &format!(
                    "<command xmlns=\"{COMMANDS}\" sessionid=\"{sid}\" node=\"{node}\" status=\"executing\">\
                     <actions execute=\"complete\"><complete/></actions>{form}</command>"
                ),
            ))
        }
        ("cancel", Some(sid)) => {
            st.sessions.remove(&sid);
            Some(result(
                &id,
                &format!("<command xmlns=\"{COMMANDS}\" sessionid=\"{sid}\" node=\"{node}\" status=\"canceled\"/>"),
            ))
        }
        ("complete", Some(sid)) => {
            let jid = field(cmd, "accountjid")
                .or_else(|| field(cmd, "accountjids"))
                .unwrap_or_default();
            if jid.starts_with("silent") {
                // Openfire: bad input can produce no reply at all; the session stays open.
                return None;
            }
            if jid.starts_with("iqerror") {
                // An IQ error (the way ejabberd reports); the session stays open.
                return Some(format!(
                    "<iq type=\"error\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\">\
                     <error type=\"cancel\"><conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
                ));
            }
            st.sessions.remove(&sid);
            let reply = if node.ends_with("#add-user") {
                if st.users.insert(jid) {
                    note(&node, &sid, "info", "Operation finished successfully")
                } else {
                    note(&node, &sid, "error", "User already exists")
                }
            } else if st.users.remove(&jid) {
                note(&node, &sid, "info", "Operation finished successfully")
            } else {
                note(&node, &sid, "error", &format!("User {jid} does not exist."))
            };
            Some(result(&id, &reply))
        }
        _ => Some(format!(
            "<iq type=\"error\" id=\"{id}\" from=\"example.test\" to=\"register.example.test\">\
             <error type=\"modify\"><bad-request xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
        )),
    }
}

/// Serves one authenticated connection until it ends, or until `idle_drop` passes without inbound
/// data (then closes it like Openfire's idle check).
async fn serve(mut conn: Conn, state: Arc<Mutex<State>>, idle_drop: Option<Duration>) {
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(20));
        tokio::select! {
            el = conn.next() => {
                let Some(el) = el else { return };
                if let Some(reply) = answer(&state, &el) {
                    conn.send(&reply).await;
                }
            }
            _ = tick => {
                if idle_drop.is_some_and(|idle| conn.idle_for() > idle) {
                    conn.send("</stream:stream>").await;
                    let _ = conn.w.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// A fake Openfire accepting any number of connections in turn.
async fn openfire(idle_drop: Option<Duration>) -> (String, Arc<Mutex<State>>, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    let accepted = Arc::new(Mutex::new(0u32));
    let (st, n) = (state.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let id = format!("of{:08x}", rand::random::<u32>());
            let conn = accept_authenticated(&listener, &id).await;
            *n.lock().unwrap() += 1;
            serve(conn, st.clone(), idle_drop).await;
        }
    });
    (addr, state, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_header_without_version_is_accepted() {
    crate::init_tracing();
    let h = header(Some("x"));
    let tag = &h[h.find("<stream:stream").unwrap()..];
    assert!(!tag.contains("version="), "{tag}");
    let (addr, _, accepted) = openfire(None).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let x = Xmpp::start(
        cfg(&addr, Duration::from_secs(2), Duration::from_secs(30)),
        shutdown.clone(),
    );
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(x.link_stats(), (1, 0));
    assert_eq!(*accepted.lock().unwrap(), 1);
    assert_eq!(x.link_state(), LinkState::Up);
}

/// Openfire refuses a second connection for the same name at the header (no stream id), with
/// `conflict`; with no secret configured, `internal-server-error`. Both must be reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_header_refusals_are_told_apart() {
    crate::init_tracing();
    for condition in ["conflict", "internal-server-error"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let x = Xmpp::start(
            cfg(&addr, Duration::from_secs(2), Duration::from_secs(30)),
            shutdown.clone(),
        );
        let mut conn = accept(&listener).await;
        conn.send(&(header(None) + &stream_error(condition))).await;
        let _ = conn.w.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(err) = x.last_link_error() {
                assert!(err.contains(condition), "{condition}: {err}");
                assert!(!err.contains("no stream id"), "{err}");
                break;
            }
            assert!(Instant::now() < deadline, "no error recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(x.link_stats().0, 0);
        shutdown.cancel();
    }
}

/// Openfire drops a component after a silence (6 min); the keepalive prevents it. The control
/// (keepalive longer than the drop) shows the scripted peer really drops idle links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_prevents_openfire_idle_drop() {
    crate::init_tracing();
    // Margins for a loaded 2-core machine: keepalives every 100 ms against a 2 s drop (a
    // twentyfold margin), watched for three drop windows.
    let idle = Duration::from_millis(2000);
    let (addr, _, accepted) = openfire(Some(idle)).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let x = Xmpp::start(
        cfg(&addr, Duration::from_secs(2), Duration::from_millis(100)),
        shutdown.clone(),
    );
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    tokio::time::sleep(3 * idle).await;
    assert_eq!(x.link_stats(), (1, 0), "{:?}", x.last_link_error());
    assert_eq!(*accepted.lock().unwrap(), 1);
    x.create_account("alice", "pw-123456")
        .await
        .expect("link works after idling");

    // Control: without a keepalive inside the window, the peer drops the link.
    let (addr, _, accepted) = openfire(Some(idle)).await;
    let ctl = CancellationToken::new();
    let _stop_ctl = ctl.clone().drop_guard();
    let y = Xmpp::start(
        cfg(&addr, Duration::from_secs(2), Duration::from_secs(60)),
        ctl.clone(),
    );
    assert!(crate::wait_up(&y, Duration::from_secs(3)).await);
    // Wait for the drop (and the reconnect it causes), with a deadline, instead of sleeping.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while *accepted.lock().unwrap() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the scripted peer did not drop an idle link"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A mix of outcomes — success and failure notes, an IQ error, no reply, a malformed first step —
/// leaves no command session open, so Openfire's per-requester limit is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_session_is_completed_or_cancelled() {
    crate::init_tracing();
    let (addr, state, _) = openfire(None).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let x = Xmpp::start(
        cfg(&addr, Duration::from_millis(300), Duration::from_secs(30)),
        shutdown.clone(),
    );
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    for round in 0..4 {
        let user = format!("user{round}");
        x.create_account(&user, "pw-123456")
            .await
            .expect("add-user");
        let dup = x.create_account(&user, "pw-123456").await;
        assert!(matches!(dup, Err(XmppError::Conflict)), "{dup:?}");
        let silent = x
            .create_account(&format!("silent{round}"), "pw-123456")
            .await;
        assert!(matches!(silent, Err(XmppError::Timeout)), "{silent:?}");
        let iqerr = x
            .create_account(&format!("iqerror{round}"), "pw-123456")
            .await;
        assert!(matches!(iqerr, Err(XmppError::Conflict)), "{iqerr:?}");
        let ghost = x.delete_account(&format!("ghost{round}"), "x").await;
        assert!(matches!(ghost, Err(XmppError::NotFound)), "{ghost:?}");
        x.delete_account(&user, "x").await.expect("delete-user");
        let silent = x.delete_account(&format!("silent{round}"), "x").await;
        assert!(matches!(silent, Err(XmppError::Timeout)), "{silent:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = state.lock().unwrap();
    assert!(
        st.sessions.is_empty(),
        "sessions left open: {:?}",
        st.sessions
    );
    assert_eq!(st.refused_for_limit, 0, "the session limit was reached");
    assert!(st.max_open <= 1, "max open sessions {}", st.max_open);
    // Every session handed out was closed by a complete or a cancel of ours.
    let cancels = st.actions.iter().filter(|(a, _)| a == "cancel").count();
    assert_eq!(cancels, 4 * 3, "{:?}", st.actions);
    assert_eq!(x.link_stats(), (1, 0));
}
