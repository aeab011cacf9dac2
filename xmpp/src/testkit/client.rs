//! A deliberately small c2s client for checking results from the outside.
//!
//! It shares no code with the crate's `c2s` module: SASL is tokio-xmpp's own
//! (`tokio_xmpp::client_login`), stanzas are read as tokio-xmpp's typed `XmppStreamElement`s, and
//! STARTTLS uses a separate rustls setup that trusts only the server's certificate file.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::xmlstream::{
    initiate_stream, ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::roster::{Roster, Subscription};
use xmpp_parsers::stream_features::StreamFeatures;
use xmpp_parsers::{ns, starttls};

use super::TestServer;
use crate::RosterEntry;

type Io = Box<dyn AsyncReadAndWrite + Send + 'static>;
const T: Duration = Duration::from_secs(5);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn within<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::time::timeout(T, f)
        .await
        .map_err(|_| "timed out".to_owned())
}

async fn next(stream: &mut XmppStream<Io>) -> Result<XmppStreamElement, String> {
    loop {
        match within(stream.next()).await? {
            Some(Ok(item)) => match item.into_read_error() {
                Ok(el) => return Ok(el),
                Err(ReadError::SoftTimeout) => continue,
                Err(e) => return Err(err(e)),
            },
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(err(e)),
            None => return Err("stream closed".into()),
        }
    }
}

fn header(domain: &str) -> StreamHeader<'static> {
    StreamHeader {
        to: Some(Cow::Owned(domain.to_owned())),
        from: None,
        id: None,
    }
}

/// Where and how to connect, taken from any [`TestServer`].
struct Target {
    domain: String,
    c2s_addr: std::net::SocketAddr,
    ca_file: Option<std::path::PathBuf>,
}

async fn starttls(server: &Target, ca: &std::path::Path, tcp: TcpStream) -> Result<Io, String> {
    let pending = initiate_stream(
        BufStream::new(tcp),
        ns::JABBER_CLIENT,
        header(&server.domain),
        Timeouts::tight(),
    );
    let pending = within(pending).await?.map_err(err)?;
    let (_, mut s) = within(pending.recv_features::<Element>())
        .await?
        .map_err(err)?;
    within(s.send(&starttls::Request)).await?.map_err(err)?;
    match within(s.next()).await? {
        Some(Ok(el)) if el.is("proceed", ns::TLS) => {}
        other => return Err(format!("no <proceed/>: {other:?}")),
    }
    let tcp = s.into_inner().into_inner();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).map_err(err)?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(err)?).map_err(err)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(server.domain.clone()).map_err(err)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = within(connector.connect(name, tcp)).await?.map_err(err)?;
    Ok(Box::new(BufStream::new(tls)))
}

async fn open(server: &Target) -> Result<(StreamFeatures, XmppStream<Io>), String> {
    let tcp = within(TcpStream::connect(server.c2s_addr))
        .await?
        .map_err(err)?;
    let io: Io = match &server.ca_file {
        None => Box::new(BufStream::new(tcp)),
        Some(ca) => starttls(server, ca, tcp).await?,
    };
    let pending = initiate_stream(
        io,
        ns::JABBER_CLIENT,
        header(&server.domain),
        Timeouts::tight(),
    );
    let pending = within(pending).await?.map_err(err)?;
    within(pending.recv_features()).await?.map_err(err)
}

/// A logged-in verification client.
pub struct TestClient {
    stream: XmppStream<Io>,
    /// The bound full JID.
    pub jid: FullJid,
    counter: u64,
    /// Messages and presences received while waiting for something else.
    pending: Vec<Stanza>,
}

impl TestClient {
    /// Logs in as `node` with `password` (tokio-xmpp's SASL) and binds a resource, on any test
    /// server (`&Prosody`, `&Ejabberd`, `&dyn TestServer`). `Err` carries the reason (e.g. an
    /// authentication failure).
    pub async fn login<S: TestServer + ?Sized>(
        server: &S,
        node: &str,
        password: &str,
    ) -> Result<TestClient, String> {
        let server = &Target {
            domain: server.domain().to_owned(),
            c2s_addr: server.c2s_addr(),
            ca_file: server.ca_file().map(Into::into),
        };
        let (features, stream) = open(server).await?;
        let creds = Credentials::default()
            .with_username(node)
            .with_password(password)
            .with_channel_binding(ChannelBinding::None);
        let stream = within(tokio_xmpp::client_login(
            stream,
            features.sasl_mechanisms,
            creds,
        ))
        .await?
        .map_err(err)?;
        let pending = within(stream.send_header(header(&server.domain)))
            .await?
            .map_err(err)?;
        let (_, stream) = within(pending.recv_features()).await?.map_err(err)?;
        let mut client = TestClient {
            stream,
            jid: FullJid::new(&format!("{node}@{}/x", server.domain)).map_err(err)?,
            counter: 0,
            pending: Vec::new(),
        };
        let resource = format!("verify-{:08x}", rand::random::<u32>());
        match client
            .iq(Iq::from_set("", BindQuery::new(Some(resource))))
            .await?
        {
            Iq::Result {
                payload: Some(p), ..
            } => {
                client.jid = BindResponse::try_from(p).map_err(err)?.jid;
                Ok(client)
            }
            other => Err(format!("bind failed: {other:?}")),
        }
    }

    async fn send(&mut self, stanza: Stanza) -> Result<(), String> {
        within(self.stream.send(&XmppStreamElement::Stanza(stanza)))
            .await?
            .map_err(err)
    }

    /// Sends any element as is (e.g. a malformed stanza to provoke the server or the component).
    pub async fn send_element(&mut self, el: &Element) -> Result<(), String> {
        within(self.stream.send(el)).await?.map_err(err)
    }

    async fn iq(&mut self, mut iq: Iq) -> Result<Iq, String> {
        self.counter += 1;
        let id = format!("v{}", self.counter);
        *iq.id_mut() = id.clone();
        self.send(Stanza::Iq(iq)).await?;
        loop {
            match next(&mut self.stream).await? {
                XmppStreamElement::Stanza(Stanza::Iq(reply)) if reply.id() == id => {
                    if matches!(reply, Iq::Result { .. } | Iq::Error { .. }) {
                        return Ok(reply);
                    }
                }
                XmppStreamElement::Stanza(Stanza::Iq(Iq::Set { from, id, .. })) => {
                    // A roster push: acknowledge it.
                    let mut ack = Iq::Result {
                        from: None,
                        to: None,
                        id,
                        payload: None,
                    };
                    *ack.to_mut() = from;
                    self.send(Stanza::Iq(ack)).await?;
                }
                XmppStreamElement::Stanza(other) => self.pending.push(other),
                XmppStreamElement::StreamError(e) => return Err(format!("stream error: {}", e.0)),
                _ => {}
            }
        }
    }

    /// The user's roster, as the server returns it.
    pub async fn roster(&mut self) -> Result<Vec<RosterEntry>, String> {
        let reply = self
            .iq(Iq::from_get(
                "",
                Roster {
                    ver: None,
                    items: vec![],
                },
            ))
            .await?;
        let payload = match reply {
            Iq::Result {
                payload: Some(p), ..
            } => p,
            Iq::Result { payload: None, .. } => return Ok(vec![]),
            other => return Err(format!("roster get failed: {other:?}")),
        };
        let roster = Roster::try_from(payload).map_err(err)?;
        Ok(roster
            .items
            .into_iter()
            .map(|i| RosterEntry {
                jid: i.jid.to_string(),
                subscription: match i.subscription {
                    Subscription::None => "none",
                    Subscription::From => "from",
                    Subscription::To => "to",
                    Subscription::Both => "both",
                    Subscription::Remove => "remove",
                }
                .to_owned(),
                nickname: i.name.unwrap_or_default(),
                groups: i.groups.into_iter().map(|g| g.0).collect(),
            })
            .collect())
    }

    /// Sends initial presence (needed to receive messages addressed to the bare JID).
    pub async fn available(&mut self) -> Result<(), String> {
        self.send(Stanza::Presence(Presence::available())).await?;
        // A round trip so the server has processed it before the caller goes on.
        self.roster().await.map(|_| ())
    }

    /// Sends a chat message to a bare JID string.
    pub async fn send_chat(&mut self, to: &str, body: &str) -> Result<(), String> {
        let to = Jid::new(to).map_err(err)?;
        let msg = Message::chat(Some(to))
            .with_body(xmpp_parsers::message::Lang::default(), body.to_owned());
        self.send(Stanza::Message(msg)).await
    }

    /// Waits up to `wait` for a chat message; returns `(from bare JID, body)`.
    pub async fn recv_chat(&mut self, wait: Duration) -> Result<(String, String), String> {
        let take = |s: &Stanza| match s {
            Stanza::Message(m) => m.get_best_body(vec![]).map(|(_, b)| {
                (
                    m.from
                        .as_ref()
                        .map(|f| f.to_bare().to_string())
                        .unwrap_or_default(),
                    b.clone(),
                )
            }),
            _ => None,
        };
        if let Some(pos) = self.pending.iter().position(|s| take(s).is_some()) {
            let s = self.pending.remove(pos);
            return Ok(take(&s).expect("checked"));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let el = tokio::time::timeout(left, next(&mut self.stream))
                .await
                .map_err(|_| "no message in time".to_owned())??;
            if let XmppStreamElement::Stanza(s) = el {
                if let Some(found) = take(&s) {
                    return Ok(found);
                }
            }
        }
    }

    /// Waits up to `wait` for a subscription request from the bare JID `from` and refuses it
    /// (`unsubscribed`), as a user's own client may. Other stanzas received meanwhile are kept.
    pub async fn refuse_subscription(&mut self, from: &str, wait: Duration) -> Result<(), String> {
        let from = Jid::new(from).map_err(err)?;
        let asks = |s: &Stanza| {
            matches!(s, Stanza::Presence(p) if p.type_ == PresenceType::Subscribe
                && p.from.as_ref().map(Jid::to_bare).as_ref() == Some(&from.to_bare()))
        };
        if let Some(pos) = self.pending.iter().position(asks) {
            self.pending.remove(pos);
        } else {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let el = tokio::time::timeout(left, next(&mut self.stream))
                    .await
                    .map_err(|_| format!("no subscription request from {from} in time"))??;
                match el {
                    XmppStreamElement::Stanza(s) if asks(&s) => break,
                    XmppStreamElement::Stanza(s) => self.pending.push(s),
                    _ => {}
                }
            }
        }
        let refusal = Presence::new(PresenceType::Unsubscribed).with_to(from);
        self.send(Stanza::Presence(refusal)).await
    }

    /// Waits (a few seconds at most) for the server to end this session, as an administrator's
    /// end-user-session does; `Ok` with how it ended (a stream error or the stream closed), `Err`
    /// when the session is still open. Stanzas received meanwhile are kept.
    pub async fn ended_by_server(&mut self) -> Result<String, String> {
        loop {
            match next(&mut self.stream).await {
                Ok(XmppStreamElement::StreamError(e)) => {
                    return Ok(format!("stream error: {}", e.0))
                }
                Ok(XmppStreamElement::Stanza(s)) => self.pending.push(s),
                Ok(_) => {}
                Err(e) if e == "timed out" => {
                    return Err(format!("{} is still open", self.jid));
                }
                Err(e) => return Ok(e),
            }
        }
    }

    /// Closes the stream.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(300), self.stream.shutdown()).await;
    }
}
