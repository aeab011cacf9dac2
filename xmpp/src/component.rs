//! The XEP-0114 component link, owned end to end (not `tokio_xmpp::Component`, see XMPP-NOTES.md).
//!
//! One task ([`Link::run`]) connects, handshakes, then serves the stream: it writes what operations
//! queue, answers disco#info and pings, routes IQ replies to their waiters by id, sends a whitespace
//! keepalive every `keepalive` — with a ping to the server when no stanza went out in that
//! interval, since Openfire's idle check counts only stanzas — and pings the server when the
//! stream has been silent that long.
//! Any stanza it cannot parse is logged and skipped. When the stream ends it tears everything
//! down (waiters get [`XmppError::LinkDown`]), closes the socket and reconnects with exponential
//! backoff and jitter until shutdown. Handshake refusals are told apart: `not-authorized` (wrong
//! secret), `conflict` (another connection holds the name) and a refusal at the stream header
//! (Openfire: a header without an id, then the socket closes with no stream error, see
//! [`LinkError::RefusedAtHeader`]). A failure that repeats is logged once per outage, not once
//! per attempt.
//!
//! The link also holds the queue in front of XEP-0050 command sessions
//! ([`Link::command_slot`]): at most `command_sessions` are open at once, because Openfire
//! refuses a requester's 101st open session with `not-allowed` and never expires the others
//! on its own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use crate::backoff::Backoff;
use crate::command::{cancel_iq, server_jid};
use crate::header_fix::VersionFix;
use crate::quirks::{self, PrivilegedRoster};
use crate::serve::Privileges;
use crate::stanza::{from_component, next_id, to_component, Whitespace, NS_COMPONENT};
use crate::{serve, BindingMode, LinkState, XmppConfig, XmppError};

type Stream = XmlStream<BufStream<VersionFix<TcpStream>>, Element>;

/// Why a connection attempt failed or a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// Handshake refused with `not-authorized`: the secret (or component name) is wrong.
    NotAuthorized,
    /// Handshake refused with `conflict`: another connection uses this component name.
    Conflict,
    /// The server answered with a stream header without an id and closed the connection without
    /// a stream error: Openfire's refusal before a session exists (`LocalComponentSession.
    /// createSession`; `NettyConnection.close` writes no error without a session).
    RefusedAtHeader,
    /// The server sent a stream error.
    Stream(String),
    /// Connecting, reading or writing failed.
    Io(String),
    /// The server closed the stream.
    Closed,
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::NotAuthorized => {
                f.write_str("handshake refused: not-authorized (wrong component secret or name)")
            }
            LinkError::Conflict => {
                f.write_str("handshake refused: conflict (another connection holds this component)")
            }
            LinkError::RefusedAtHeader => f.write_str(
                "refused at the stream header (header without an id, then closed without a stream \
                 error): on Openfire the component name is already connected (and the header had \
                 no allowMultiple), the subdomain is not permitted by xmpp.component.permission, \
                 or no secret is set for it",
            ),
            LinkError::Stream(cond) => write!(f, "stream error: {cond}"),
            LinkError::Io(e) => write!(f, "i/o: {e}"),
            LinkError::Closed => f.write_str("stream closed by the server"),
            LinkError::Timeout => f.write_str("timed out"),
        }
    }
}

/// The shared state of the component link; operations call [`Link::iq`].
pub(crate) struct Link {
    cfg: XmppConfig,
    jid: Jid,
    state: watch::Sender<LinkState>,
    out: Mutex<Option<mpsc::UnboundedSender<Element>>>,
    /// Waiting requests by id, with the JID their reply must come from.
    pending: Mutex<HashMap<String, (Jid, oneshot::Sender<Iq>)>>,
    connects: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    privileges: watch::Sender<Option<Privileges>>,
    /// Whether privileged roster writes work (decided after each link-up, privileged mode only).
    roster_writes: watch::Sender<PrivilegedRoster>,
    /// The queue in front of XEP-0050 command sessions (FIFO, `command_sessions` permits).
    commands: Semaphore,
    /// Command sessions whose cancel could not be sent (link down): cancelled after link-up,
    /// since Openfire keeps them (and counts them against its limit) across reconnections.
    orphans: Mutex<Vec<(String, String)>>,
    /// Whether a `forbidden` answer to an admin command was logged since the last link-up.
    forbidden_logged: AtomicBool,
}

impl Link {
    pub(crate) fn new(cfg: XmppConfig) -> Result<Arc<Link>, XmppError> {
        let jid = Jid::new(&cfg.component)
            .map_err(|e| XmppError::InvalidInput(format!("component JID: {e}")))?;
        Ok(Arc::new(Link {
            jid,
            state: watch::channel(LinkState::Down).0,
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            privileges: watch::channel(None).0,
            roster_writes: watch::channel(PrivilegedRoster::Unknown).0,
            commands: Semaphore::new(cfg.command_sessions.max(1)),
            orphans: Mutex::new(Vec::new()),
            forbidden_logged: AtomicBool::new(false),
            cfg,
        }))
    }

    pub(crate) fn config(&self) -> &XmppConfig {
        &self.cfg
    }

    pub(crate) fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.connects.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("lock").clone()
    }

    /// The privileges granted after the handshake, waiting up to `wait` for the server's message.
    pub(crate) async fn privileges(&self, wait: Duration) -> Option<Privileges> {
        let mut rx = self.privileges.subscribe();
        let got = tokio::time::timeout(wait, rx.wait_for(|p| p.is_some())).await;
        match got {
            Ok(Ok(p)) => p.clone(),
            _ => None,
        }
    }

    /// Whether privileged roster writes work on this server, waiting up to `wait` for the check
    /// made at link-up; [`PrivilegedRoster::Unknown`] if it did not finish in time.
    pub(crate) async fn roster_writes(&self, wait: Duration) -> PrivilegedRoster {
        let mut rx = self.roster_writes.subscribe();
        let got =
            tokio::time::timeout(wait, rx.wait_for(|r| *r != PrivilegedRoster::Unknown)).await;
        match got {
            Ok(Ok(r)) => r.clone(),
            _ => PrivilegedRoster::Unknown,
        }
    }

    /// The verdict of the last link-up's roster-write check, without waiting.
    pub(crate) fn roster_writes_now(&self) -> PrivilegedRoster {
        self.roster_writes.borrow().clone()
    }

    /// Run after each link-up in privileged mode: reads the granted privileges and, where
    /// [`quirks::needs_roster_set_probe`] says so, probes a roster write (see `quirks`). A broken
    /// server is logged here, once per link-up, as an error naming the fix.
    async fn check_roster_writes(self: Arc<Self>) {
        let wait = self.cfg.timeout.min(Duration::from_secs(2));
        let verdict = match self.privileges(wait).await {
            Some(p) if quirks::needs_roster_set_probe(&p.namespace) => {
                match self.iq(quirks::roster_set_probe(&self.cfg.domain)).await {
                    Ok(reply) => quirks::judge_roster_set_probe(reply),
                    Err(e) => {
                        tracing::warn!(error = %e, "privileged roster-set probe got no answer");
                        PrivilegedRoster::Usable
                    }
                }
            }
            Some(p) if p.perms.get("roster").map(String::as_str) == Some("both") => {
                PrivilegedRoster::Usable
            }
            // No roster grant (or not `both`): no bind or unbind can work.
            granted => PrivilegedRoster::Broken(format!(
                "the server granted the component no XEP-0356 roster permission 'both' (granted: \
                 {}); grant it (Prosody: mod_privilege's `privileged_entities`, ejabberd: \
                 mod_privilege `roster: both`) or set xmpp.binding = \"c2s\"",
                granted
                    .as_ref()
                    .and_then(|p| p.perms.get("roster").cloned())
                    .unwrap_or_else(|| "none".into())
            )),
        };
        if let PrivilegedRoster::Broken(why) = &verdict {
            tracing::error!(
                component = %self.cfg.component,
                "binding = \"privileged\" cannot work against this server: {why}"
            );
        }
        self.roster_writes.send_replace(verdict);
    }

    /// Sends an IQ (id and `from` are set here) and waits for its reply.
    pub(crate) async fn iq(&self, mut iq: Iq) -> Result<Iq, XmppError> {
        let id = next_id();
        *iq.id_mut() = id.clone();
        *iq.from_mut() = Some(self.jid.clone());
        // The reply must come from where the request went (the server itself when it names no
        // one): any other sender's result with a guessed id is not taken for it.
        let expected = iq.to().cloned().unwrap_or_else(|| server_jid(&self.cfg));
        let el = to_component(&Element::from(iq));
        if !crate::stanza::xml_safe(&el) {
            return Err(XmppError::InvalidInput(
                "a character XML does not allow in the request".into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let out = self
            .out
            .lock()
            .expect("lock")
            .clone()
            .ok_or(XmppError::LinkDown)?;
        self.pending
            .lock()
            .expect("lock")
            .insert(id.clone(), (expected, tx));
        if out.send(el).is_err() {
            self.pending.lock().expect("lock").remove(&id);
            return Err(XmppError::LinkDown);
        }
        match tokio::time::timeout(self.cfg.timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(XmppError::LinkDown),
            Err(_) => {
                self.pending.lock().expect("lock").remove(&id);
                Err(XmppError::Timeout)
            }
        }
    }

    /// Queues an IQ without waiting for its reply (command cancels); false when the link is down.
    pub(crate) fn send_iq_nowait(&self, mut iq: Iq) -> bool {
        *iq.id_mut() = next_id();
        *iq.from_mut() = Some(self.jid.clone());
        let el = to_component(&Element::from(iq));
        if !crate::stanza::xml_safe(&el) {
            return false;
        }
        match self.out.lock().expect("lock").as_ref() {
            Some(out) => out.send(el).is_ok(),
            None => false,
        }
    }

    /// Waits for a free command-session slot (FIFO). Hold it until the session is completed or
    /// its cancel is sent.
    pub(crate) async fn command_slot(&self) -> SemaphorePermit<'_> {
        self.commands
            .acquire()
            .await
            .expect("the command semaphore is never closed")
    }

    /// Cancels the command session `session` of `node` now, or after the next link-up when the
    /// link is down.
    pub(crate) fn cancel_command(&self, node: &str, session: &str) {
        if !self.send_iq_nowait(cancel_iq(&self.cfg, node, session)) {
            self.orphans
                .lock()
                .expect("lock")
                .push((node.to_owned(), session.to_owned()));
        }
    }

    /// Logs, once per link-up, that the server refuses admin commands with `forbidden`. On
    /// Openfire a component may always run them unless the user store is read-only
    /// (`AddUser.hasPermission`), so that is the setting named.
    pub(crate) fn note_forbidden(&self, detail: &str) {
        if !self.forbidden_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                component = %self.cfg.component,
                "the server refuses XEP-0133 account commands ({detail}): on Openfire the user \
                 store is read-only (LDAP/AD or a read-only JDBC provider) and must be writable \
                 (provider.user.className = DefaultUserProvider, or a HybridUserProvider with a \
                 writable provider); on Prosody list the component in `admins`; on ejabberd grant \
                 it `configure`"
            );
        }
    }

    /// Sends the cancels that could not be sent while the link was down.
    fn cancel_orphans(&self) {
        let orphans = std::mem::take(&mut *self.orphans.lock().expect("lock"));
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "cancelling command sessions left open by the last outage"
            );
        }
        for (node, session) in orphans {
            self.cancel_command(&node, &session);
        }
    }

    /// Connects, serves, reconnects with backoff until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        // The failure last logged in the current outage, and the outage's failed attempts.
        let mut outage: Option<(String, u64)> = None;
        while !shutdown.is_cancelled() {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(self.cfg.timeout, self.connect()) => r,
            };
            match attempt.unwrap_or(Err(LinkError::Timeout)) {
                Ok(stream) => {
                    self.connects.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    match outage.take() {
                        Some((_, tries)) => tracing::info!(
                            component = %self.cfg.component,
                            failed_attempts = tries,
                            "component link up"
                        ),
                        None => {
                            tracing::info!(component = %self.cfg.component, "component link up")
                        }
                    }
                    self.privileges.send_replace(None);
                    self.roster_writes.send_replace(PrivilegedRoster::Unknown);
                    if self.cfg.binding == BindingMode::Privileged {
                        tokio::spawn(self.clone().check_roster_writes());
                    }
                    // An outage starts with this loss, logged below; a failing reconnection that
                    // follows is logged once more, with its own reason.
                    let why = self.serve(stream, &shutdown).await;
                    if shutdown.is_cancelled() {
                        break;
                    }
                    tracing::warn!(reason = %why, "component link down; reconnecting");
                    self.set_error(&why);
                }
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    let key = e.to_string();
                    let tries = outage.as_ref().map_or(0, |(_, n)| *n) + 1;
                    let repeated = outage.as_ref().is_some_and(|(last, _)| *last == key);
                    outage = Some((key, tries));
                    if repeated {
                        tracing::debug!(error = %e, "component connection failed again");
                    } else {
                        self.log_failure(&e);
                    }
                    self.set_error(&e);
                }
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.state.send_replace(LinkState::Down);
    }

    /// Logs the first failure of an outage (or a new kind of failure within one).
    fn log_failure(&self, e: &LinkError) {
        let component = &self.cfg.component;
        match e {
            LinkError::NotAuthorized => tracing::error!(
                %component,
                "component handshake refused: not-authorized — check the component secret and name"
            ),
            LinkError::Conflict => tracing::warn!(
                %component,
                "component handshake refused: conflict — another connection holds the name"
            ),
            LinkError::RefusedAtHeader => tracing::error!(%component, "component {e}"),
            other => tracing::warn!(error = %other, "component connection failed"),
        }
        tracing::info!("until the link is up, further identical failures are logged at debug");
    }

    fn set_error(&self, e: &LinkError) {
        *self.last_error.lock().expect("lock") = Some(e.to_string());
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            read_timeout: self.cfg.keepalive,
            response_timeout: (self.cfg.timeout * 2).max(Duration::from_secs(2)),
        }
    }

    async fn connect(&self) -> Result<Stream, LinkError> {
        let io = |e: std::io::Error| LinkError::Io(e.to_string());
        let tcp = TcpStream::connect(&self.cfg.component_addr)
            .await
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let header = StreamHeader {
            to: Some(Cow::Owned(self.cfg.component.clone())),
            from: None,
            id: None,
        };
        let mut transport = VersionFix::new(tcp);
        if self.cfg.allow_multiple {
            transport = transport.with_outgoing_attr(" allowMultiple='true'");
        }
        let mut pending = initiate_stream(
            BufStream::new(transport),
            NS_COMPONENT,
            header,
            self.timeouts(),
        )
        .await
        .map_err(io)?;
        let id = pending.take_header().id;
        let mut stream: Stream = pending.skip_features();
        let Some(id) = id else {
            // Openfire refuses a name in use, a subdomain not permitted or one without a secret
            // with a header without an id and closes the socket: no stream error, no footer (it
            // writes an error only once a session exists, and none does yet). A server that does
            // send a stream error here gets it reported.
            return Err(match stream.next().await {
                Some(Ok(el)) if el.is("error", ns::STREAM) => {
                    handshake_refusal(&serve::stream_error_condition(&el))
                }
                None
                | Some(Err(ReadError::HardError(_)))
                | Some(Err(ReadError::StreamFooterReceived)) => LinkError::RefusedAtHeader,
                _ => LinkError::Io("no stream id in the server's header".into()),
            });
        };
        let handshake =
            Handshake::from_stream_id_and_password(id.into_owned(), &self.cfg.component_secret);
        stream.send(&handshake).await.map_err(io)?;
        loop {
            match stream.next().await {
                Some(Ok(el)) if el.is("handshake", NS_COMPONENT) => return Ok(stream),
                Some(Ok(el)) if el.is("error", ns::STREAM) => {
                    return Err(handshake_refusal(&serve::stream_error_condition(&el)))
                }
                Some(Ok(el)) => tracing::debug!(name = el.name(), "ignored before handshake"),
                Some(Err(ReadError::SoftTimeout)) => {}
                Some(Err(ReadError::ParseError(e))) => tracing::debug!(%e, "unparsable element"),
                Some(Err(ReadError::HardError(e))) => return Err(io(e)),
                Some(Err(ReadError::StreamFooterReceived)) | None => return Err(LinkError::Closed),
            }
        }
    }

    async fn serve(&self, mut stream: Stream, shutdown: &CancellationToken) -> LinkError {
        let (tx, mut rx) = mpsc::unbounded_channel::<Element>();
        *self.out.lock().expect("lock") = Some(tx);
        self.forbidden_logged.store(false, Ordering::Relaxed);
        self.cancel_orphans();
        self.state.send_replace(LinkState::Up);
        let mut keepalive = tokio::time::interval(self.cfg.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        // Whether a stanza went out since the last keepalive tick. Openfire counts only stanzas
        // to clear its idle mark (whitespace just restarts its timer), so an interval without
        // one ends with a ping to the server (NettyIdleStateKeepAliveHandler, NettyConnectionHandler).
        let mut sent_stanza = false;
        let why = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break LinkError::Closed,
                Some(el) = rx.recv() => {
                    if let Err(e) = stream.send(&el).await {
                        break LinkError::Io(e.to_string());
                    }
                    sent_stanza = true;
                }
                _ = keepalive.tick() => {
                    if let Err(e) = stream.send(&Whitespace).await {
                        break LinkError::Io(e.to_string());
                    }
                    if !std::mem::replace(&mut sent_stanza, false) {
                        let ping = Iq::from_get(next_id(), Ping)
                            .with_from(self.jid.clone())
                            .with_to(server_jid(&self.cfg));
                        if let Err(e) = stream.send(&to_component(&Element::from(ping))).await {
                            break LinkError::Io(e.to_string());
                        }
                    }
                }
                item = stream.next() => match item {
                    Some(Ok(el)) if el.is("error", ns::STREAM) => {
                        break LinkError::Stream(serve::stream_error_condition(&el));
                    }
                    Some(Ok(el)) => {
                        if let Some(reply) = self.handle(el) {
                            if let Err(e) = stream.send(&to_component(&reply)).await {
                                break LinkError::Io(e.to_string());
                            }
                            sent_stanza = true;
                        }
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Silence for `keepalive`: make the server talk, or time out hard.
                        let ping = Iq::from_get(next_id(), Ping)
                            .with_from(self.jid.clone())
                            .with_to(server_jid(&self.cfg));
                        if let Err(e) = stream.send(&to_component(&Element::from(ping))).await {
                            break LinkError::Io(e.to_string());
                        }
                        sent_stanza = true;
                    }
                    Some(Err(ReadError::ParseError(e))) => {
                        tracing::warn!(%e, "skipped an unparsable element on the component link");
                    }
                    Some(Err(ReadError::HardError(e))) => break LinkError::Io(e.to_string()),
                    Some(Err(ReadError::StreamFooterReceived)) | None => break LinkError::Closed,
                }
            }
        };
        // Tear down: no new sends, wake every waiter with LinkDown, close the socket.
        *self.out.lock().expect("lock") = None;
        drop(rx);
        self.state.send_replace(LinkState::Down);
        self.pending.lock().expect("lock").clear();
        let _ = tokio::time::timeout(Duration::from_millis(300), stream.shutdown()).await;
        drop(stream);
        why
    }

    /// Handles one stanza from the server; returns a reply (jabber:client) to send, if any.
    fn handle(&self, el: Element) -> Option<Element> {
        let el = from_component(&el);
        match el.name() {
            "iq" => match Iq::try_from(el.clone()) {
                Ok(iq @ (Iq::Result { .. } | Iq::Error { .. })) => {
                    let mut pending = self.pending.lock().expect("lock");
                    let from_ok = pending
                        .get(iq.id())
                        .map(|(expected, _)| same_jid(iq.from(), expected, &self.cfg.domain));
                    match from_ok {
                        Some(true) => {
                            if let Some((_, tx)) = pending.remove(iq.id()) {
                                let _ = tx.send(iq);
                            }
                        }
                        // Left waiting: the real reply may still come.
                        Some(false) => tracing::warn!(
                            id = iq.id(),
                            from = ?iq.from().map(|j| j.to_string()),
                            "a reply from another JID than the request went to: ignored"
                        ),
                        None => tracing::trace!(id = iq.id(), "reply nobody waits for"),
                    }
                    None
                }
                Ok(request) => Some(serve::answer_request(request, &self.jid)),
                Err(e) => {
                    tracing::warn!(%e, "skipped an unparsable IQ on the component link");
                    serve::bad_request_reply(&el, &self.jid)
                }
            },
            "message" => {
                // Only the server grants privileges (XEP-0356): the same element from anyone
                // else, a user of the server included, changes nothing.
                let from_server = el
                    .attr("from")
                    .is_some_and(|f| f.eq_ignore_ascii_case(&self.cfg.domain));
                if let Some(p) = serve::parse_privileges(&el).filter(|_| from_server) {
                    tracing::info!(?p.perms, namespace = %p.namespace, "server granted privileges");
                    self.privileges.send_replace(Some(p));
                } else if let Err(e) = xmpp_parsers::message::Message::try_from(el) {
                    tracing::debug!(%e, "skipped an unparsable message to the component");
                }
                None
            }
            "presence" => {
                if let Err(e) = xmpp_parsers::presence::Presence::try_from(el) {
                    tracing::debug!(%e, "skipped an unparsable presence to the component");
                }
                None
            }
            other => {
                tracing::debug!(
                    name = other,
                    "skipped an unknown element on the component link"
                );
                None
            }
        }
    }
}

/// A stream error received while connecting.
fn handshake_refusal(condition: &str) -> LinkError {
    match condition {
        "not-authorized" => LinkError::NotAuthorized,
        "conflict" => LinkError::Conflict,
        other => LinkError::Stream(other.to_owned()),
    }
}

/// Whether a reply's `from` is the JID its request went to. A server may leave `from` out of a
/// reply to a request addressed to itself; JIDs compare with their domain in any case.
fn same_jid(from: Option<&Jid>, expected: &Jid, domain: &str) -> bool {
    match from {
        Some(f) => f.to_string().to_lowercase() == expected.to_string().to_lowercase(),
        None => expected.to_string().eq_ignore_ascii_case(domain),
    }
}
