//! Client (c2s) sessions over a raw `XmlStream<_, minidom::Element>` (not `tokio_xmpp::Client`,
//! see XMPP-NOTES.md): TCP with TCP_NODELAY, STARTTLS done here with our own rustls config, SASL
//! SCRAM-SHA-1 (then SCRAM-SHA-256, then PLAIN — PLAIN only over TLS unless explicitly allowed)
//! with no channel binding, resource binding with a unique resource, and no initial presence.
//!
//! A [`Session`] is driven by one caller at a time: [`Session::iq`] sends a request and reads until
//! its reply, answering roster pushes and pings on the way and keeping presences and messages in
//! an inbox. Every step has a timeout. A session that saw an I/O or stream error is marked dead so
//! the pool can replace it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sasl::client::mechanisms::{Plain, Scram};
use sasl::client::Mechanism;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::ns;
use xmpp_parsers::sasl::{Auth, Challenge, Failure, Mechanism as SaslMechanism, Response, Success};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::starttls;
use xmpp_parsers::stream_features::StreamFeatures;

use crate::serve::stream_error_condition;
use crate::stanza::{next_id, random_suffix};
use crate::{C2sTls, XmppConfig, XmppError};

type Io = Box<dyn AsyncReadAndWrite + Send + 'static>;
type Stream = XmlStream<Io, Element>;

fn failed(what: impl std::fmt::Display) -> XmppError {
    XmppError::SessionFailed(what.to_string())
}

fn stream_timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(60),
        response_timeout: Duration::from_secs(60),
    }
}

async fn step<T, E: std::fmt::Display>(
    t: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, XmppError> {
    match tokio::time::timeout(t, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(format!("{what}: {e}"))),
        Err(_) => Err(XmppError::Timeout),
    }
}

/// Reads the next element, skipping soft timeouts; stream errors and closes are failures.
async fn read_el<S: tokio::io::AsyncBufRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut XmlStream<S, Element>,
) -> Result<Element, XmppError> {
    loop {
        match stream.next().await {
            Some(Ok(el)) if el.is("error", ns::STREAM) => {
                return Err(failed(format!(
                    "stream error: {}",
                    stream_error_condition(&el)
                )))
            }
            Some(Ok(el)) => return Ok(el),
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::ParseError(e))) => {
                tracing::debug!(%e, "skipped unparsable element")
            }
            Some(Err(ReadError::HardError(e))) => return Err(failed(format!("read: {e}"))),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(failed("stream closed by the server"))
            }
        }
    }
}

/// A SASL `<failure/>`: bad credentials or a disabled account are [`XmppError::AuthFailed`].
fn sasl_failure(f: Failure) -> XmppError {
    use xmpp_parsers::sasl::DefinedCondition as C;
    match f.defined_condition {
        C::NotAuthorized | C::AccountDisabled | C::CredentialsExpired | C::InvalidAuthzid => {
            XmppError::AuthFailed
        }
        other => failed(format!("SASL failure: {other:?}")),
    }
}

/// One c2s stream, before or after authentication.
pub(crate) struct Session {
    stream: Stream,
    domain: String,
    timeout: Duration,
    allow_plain: bool,
    features: StreamFeatures,
    tls: bool,
    bound: Option<FullJid>,
    inbox: VecDeque<Element>,
    dead: bool,
}

impl Session {
    /// Connects and negotiates TLS as `cfg.c2s_tls` says; not authenticated yet.
    pub(crate) async fn open(
        cfg: &XmppConfig,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<Session, XmppError> {
        let t = cfg.timeout;
        let tcp = step(t, "connect", TcpStream::connect(&cfg.c2s_addr)).await?;
        tcp.set_nodelay(true).map_err(failed)?;
        let header = || StreamHeader {
            to: Some(Cow::Owned(cfg.domain.clone())),
            from: None,
            id: None,
        };
        let pending = step(
            t,
            "stream",
            initiate_stream(
                BufStream::new(tcp),
                ns::JABBER_CLIENT,
                header(),
                stream_timeouts(),
            ),
        )
        .await?;
        let (features, mut stream) =
            step(t, "features", pending.recv_features::<Element>()).await?;
        let want_tls = match cfg.c2s_tls {
            C2sTls::Off => false,
            C2sTls::Optional => features.can_starttls(),
            C2sTls::Required if features.can_starttls() => true,
            C2sTls::Required => return Err(failed("the server does not offer STARTTLS")),
        };
        let mut session = if want_tls {
            let tls = match tls {
                Some(tls) => tls,
                None => crate::tls::client_config(cfg)?,
            };
            step(t, "starttls", stream.send(&starttls::Request)).await?;
            let answer = tokio::time::timeout(t, read_el(&mut stream))
                .await
                .map_err(|_| XmppError::Timeout)??;
            if !answer.is("proceed", ns::TLS) {
                return Err(failed(format!("STARTTLS refused: <{}/>", answer.name())));
            }
            let tcp: TcpStream = stream.into_inner().into_inner();
            let name = ServerName::try_from(cfg.domain.clone()).map_err(failed)?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            let tls_stream = step(t, "TLS handshake", connector.connect(name, tcp)).await?;
            let io: Io = Box::new(BufStream::new(tls_stream));
            let pending = step(
                t,
                "stream",
                initiate_stream(io, ns::JABBER_CLIENT, header(), stream_timeouts()),
            )
            .await?;
            let (features, stream) =
                step(t, "features", pending.recv_features::<Element>()).await?;
            Session::new(cfg, stream, features, true)
        } else {
            Session::new(cfg, stream.box_stream(), features, false)
        };
        session.timeout = t;
        Ok(session)
    }

    fn new(cfg: &XmppConfig, stream: Stream, features: StreamFeatures, tls: bool) -> Session {
        Session {
            stream,
            domain: cfg.domain.clone(),
            timeout: cfg.timeout,
            allow_plain: cfg.allow_plain_without_tls,
            features,
            tls,
            bound: None,
            inbox: VecDeque::new(),
            dead: false,
        }
    }

    /// Opens, authenticates as `node` and binds a unique resource.
    pub(crate) async fn login(
        cfg: &XmppConfig,
        tls: Option<Arc<ClientConfig>>,
        node: &str,
        password: &str,
    ) -> Result<Session, XmppError> {
        let session = Session::open(cfg, tls).await?;
        session.authenticate(node, password).await
    }

    /// Whether STARTTLS was negotiated.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the server offered in-band registration.
    pub(crate) fn offers_registration(&self) -> bool {
        self.features.in_band_registration
    }

    /// Whether the session can still be used.
    pub(crate) fn is_alive(&self) -> bool {
        !self.dead
    }

    fn pick_mechanism(&self, creds: Credentials) -> Result<Box<dyn Mechanism + Send>, XmppError> {
        let offered = &self.features.sasl_mechanisms;
        let bad = |e: sasl::client::MechanismError| failed(format!("SASL: {e}"));
        if offered.contains("SCRAM-SHA-1") {
            Ok(Box::new(
                Scram::<Sha1>::from_credentials(creds).map_err(bad)?,
            ))
        } else if offered.contains("SCRAM-SHA-256") {
            Ok(Box::new(
                Scram::<Sha256>::from_credentials(creds).map_err(bad)?,
            ))
        } else if offered.contains("PLAIN") {
            if !self.tls && !self.allow_plain {
                return Err(failed(
                    "only PLAIN offered without TLS (allow_plain_without_tls is off)",
                ));
            }
            Ok(Box::new(Plain::from_credentials(creds).map_err(bad)?))
        } else {
            Err(failed(format!(
                "no usable SASL mechanism among {offered:?}"
            )))
        }
    }

    /// SASL, the stream restart, then resource binding.
    async fn authenticate(mut self, node: &str, password: &str) -> Result<Session, XmppError> {
        self.sasl(node, password).await?;
        let mut session = self.restart_stream().await?;
        session.bind_resource().await?;
        Ok(session)
    }

    /// The SASL exchange with the first usable mechanism, until `<success/>` (with the server's
    /// signature checked) or `<failure/>`.
    async fn sasl(&mut self, node: &str, password: &str) -> Result<(), XmppError> {
        let t = self.timeout;
        let creds = Credentials::default()
            .with_username(node)
            .with_password(password)
            .with_channel_binding(ChannelBinding::None);
        let mut mech = self.pick_mechanism(creds)?;
        let mechanism = SaslMechanism::from_str(mech.name()).map_err(failed)?;
        let auth = Auth {
            mechanism,
            data: mech.initial(),
        };
        step(t, "auth", self.stream.send(&auth)).await?;
        loop {
            let el = self.next_el(t).await?;
            if el.ns() != ns::SASL {
                return Err(XmppError::Protocol(format!(
                    "unexpected <{}/> during SASL",
                    el.name()
                )));
            }
            match el.name() {
                "challenge" => {
                    let c =
                        Challenge::try_from(el).map_err(|e| XmppError::Protocol(e.to_string()))?;
                    let data = mech
                        .response(&c.data)
                        .map_err(|e| failed(format!("SASL: {e}")))?;
                    step(t, "auth", self.stream.send(&Response { data })).await?;
                }
                "success" => {
                    let s =
                        Success::try_from(el).map_err(|e| XmppError::Protocol(e.to_string()))?;
                    return mech
                        .success(&s.data)
                        .map_err(|e| failed(format!("server signature rejected: {e}")));
                }
                "failure" => {
                    let f =
                        Failure::try_from(el).map_err(|e| XmppError::Protocol(e.to_string()))?;
                    return Err(sasl_failure(f));
                }
                other => return Err(XmppError::Protocol(format!("unexpected SASL <{other}/>"))),
            }
        }
    }

    /// The stream restart after SASL: a new header, new features, an empty inbox.
    async fn restart_stream(self) -> Result<Session, XmppError> {
        let Session {
            stream,
            domain,
            timeout,
            allow_plain,
            tls,
            ..
        } = self;
        let header = StreamHeader {
            to: Some(Cow::Owned(domain.clone())),
            from: None,
            id: None,
        };
        let pending = step(
            timeout,
            "stream restart",
            stream.initiate_reset().send_header(header),
        )
        .await?;
        let (features, stream) =
            step(timeout, "features", pending.recv_features::<Element>()).await?;
        Ok(Session {
            stream,
            domain,
            timeout,
            allow_plain,
            features,
            tls,
            bound: None,
            inbox: VecDeque::new(),
            dead: false,
        })
    }

    /// Binds a unique resource (`register-<random>`).
    async fn bind_resource(&mut self) -> Result<(), XmppError> {
        let resource = format!("register-{}", random_suffix());
        let reply = self
            .iq(Iq::from_set("", BindQuery::new(Some(resource))))
            .await?;
        match reply {
            Iq::Result {
                payload: Some(p), ..
            } => {
                let bound =
                    BindResponse::try_from(p).map_err(|e| XmppError::Protocol(e.to_string()))?;
                self.bound = Some(bound.jid);
                Ok(())
            }
            Iq::Error { error, .. } => Err(failed(format!(
                "bind: {}",
                crate::stanza::error_text(&error)
            ))),
            _ => Err(XmppError::Protocol("empty bind reply".into())),
        }
    }

    async fn next_el(&mut self, t: Duration) -> Result<Element, XmppError> {
        match tokio::time::timeout(t, read_el(&mut self.stream)).await {
            Ok(Ok(el)) => Ok(el),
            Ok(Err(e)) => {
                self.dead = true;
                Err(e)
            }
            Err(_) => Err(XmppError::Timeout),
        }
    }

    /// Sends any stanza (presence, message); built by the caller with xmpp-parsers.
    pub(crate) async fn send(&mut self, el: Element) -> Result<(), XmppError> {
        let r = step(self.timeout, "send", self.stream.send(&el)).await;
        if matches!(r, Err(XmppError::SessionFailed(_))) {
            self.dead = true;
        }
        r
    }

    /// Sends an IQ (the id is set here) and reads until its reply.
    pub(crate) async fn iq(&mut self, mut iq: Iq) -> Result<Iq, XmppError> {
        let id = next_id();
        *iq.id_mut() = id.clone();
        self.send(iq.into()).await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let el = self.next_el(left).await?;
            if el.name() != "iq" {
                self.inbox.push_back(el);
                continue;
            }
            match Iq::try_from(el) {
                Ok(reply @ (Iq::Result { .. } | Iq::Error { .. })) => {
                    if reply.id() == id {
                        return Ok(reply);
                    }
                }
                Ok(request) => self.answer(request).await?,
                Err(e) => tracing::debug!(%e, "skipped an unparsable IQ"),
            }
        }
    }

    /// Answers a request from the server: roster pushes and pings get a result.
    async fn answer(&mut self, request: Iq) -> Result<(), XmppError> {
        let (from, id, payload) = match request {
            Iq::Get {
                from, id, payload, ..
            }
            | Iq::Set {
                from, id, payload, ..
            } => (from, id, payload),
            _ => return Ok(()),
        };
        let ok = payload.is("query", ns::ROSTER) || payload.is("ping", ns::PING);
        let mut reply = if ok {
            crate::stanza::empty_result(id)
        } else {
            let err = StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "",
            );
            Iq::from_error(id, err)
        };
        *reply.to_mut() = from;
        self.send(reply.into()).await
    }

    /// Stanzas other than IQs received so far (presences, messages), oldest first.
    pub(crate) fn take_inbox(&mut self) -> Vec<Element> {
        self.inbox.drain(..).collect()
    }

    /// A round trip to the server: everything sent before has been processed when it returns.
    pub(crate) async fn sync(&mut self) -> Result<(), XmppError> {
        let to = Jid::new(&self.domain).map_err(failed)?;
        let ping = Iq::from_get("", xmpp_parsers::ping::Ping).with_to(to);
        match self.iq(ping).await? {
            Iq::Result { .. } | Iq::Error { .. } => Ok(()),
            _ => Ok(()),
        }
    }

    /// Closes the stream (footer, then the socket), without waiting long.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(300), self.stream.shutdown()).await;
    }
}
