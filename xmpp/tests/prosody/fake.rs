//! Framing tests with a scripted fake server (tokio-xmpp's responder stream) and a byte-recording
//! proxy in front of Prosody, for behaviours a real Prosody cannot be made to show.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{accept_stream, StreamHeader, Timeouts, XmlStream};
use xmpp::testkit::Prosody;
use xmpp::{AccountsMode, BindingMode, Xmpp, XmppConfig, XmppError};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};
use xmpp_parsers::stream_features::StreamFeatures;

const NS: &str = "jabber:component:accept";
type Fake = XmlStream<BufStream<TcpStream>, Element>;

fn cfg(addr: &str, timeout: Duration) -> XmppConfig {
    let names = ("example.test", "register.example.test", "s");
    crate::common::scripted_peer_config(addr, names, timeout, Duration::from_secs(30))
}

/// A client started against a fake peer's listener (not yet accepted), with `timeout` for its
/// requests; it stops when the token is cancelled.
async fn started_on_fake(timeout: Duration) -> (TcpListener, Xmpp, CancellationToken) {
    crate::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(cfg(&addr, timeout), shutdown.clone());
    (listener, x, shutdown)
}

/// Accepts one component connection and reads its handshake.
async fn accept(listener: &TcpListener) -> Fake {
    let (tcp, _) = listener.accept().await.unwrap();
    let accepted = accept_stream(BufStream::new(tcp), NS, Timeouts::tight())
        .await
        .unwrap();
    let header = StreamHeader {
        from: Some(Cow::Borrowed("register.example.test")),
        to: None,
        id: Some(Cow::Borrowed("fake-id")),
    };
    let pending = accepted.send_header(header).await.unwrap();
    let mut s: Fake = pending
        .send_features(&StreamFeatures::default())
        .await
        .unwrap();
    let hs = s.next().await.unwrap().unwrap();
    assert_eq!(hs.name(), "handshake");
    assert_eq!(hs.text(), hex_sha1("fake-ids"));
    s
}

fn hex_sha1(s: &str) -> String {
    let el: Element = Handshake::from_stream_id_and_password(s.to_owned(), "").into();
    el.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_conflict_is_told_apart() {
    let (listener, x, shutdown) = started_on_fake(Duration::from_secs(2)).await;
    let mut s = accept(&listener).await;
    s.send(&StreamError::new(
        DefinedCondition::Conflict,
        "en",
        "in use",
    ))
    .await
    .unwrap();
    let _ = s.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = x.last_link_error().unwrap();
    assert!(
        err.contains("conflict") && !err.contains("not-authorized"),
        "{err}"
    );
    // It retries (a second connection arrives).
    let _again = tokio::time::timeout(Duration::from_secs(3), accept(&listener))
        .await
        .expect("retried");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_command_times_out_and_is_cancelled() {
    let (listener, x, shutdown) = started_on_fake(Duration::from_millis(500)).await;
    let seen = Arc::new(Mutex::new(Vec::<Element>::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut s = accept(&listener).await;
        s.send(&Handshake::new()).await.unwrap();
        while let Some(Ok(el)) = s.next().await {
            seen2.lock().unwrap().push(el.clone());
            let cmd = el.get_child("command", "http://jabber.org/protocol/commands");
            if cmd.and_then(|c| c.attr("action")) == Some("execute") {
                let form = Element::builder("x", "jabber:x:data")
                    .attr("type".try_into().unwrap(), "form")
                    .build();
                let command = Element::builder("command", "http://jabber.org/protocol/commands")
                    .attr("status".try_into().unwrap(), "executing")
                    .attr("sessionid".try_into().unwrap(), "sess-1")
                    .append(form)
                    .build();
                let reply = Element::builder("iq", NS)
                    .attr("type".try_into().unwrap(), "result")
                    .attr("id".try_into().unwrap(), el.attr("id").unwrap())
                    .attr("to".try_into().unwrap(), "register.example.test")
                    .append(command)
                    .build();
                s.send(&reply).await.unwrap();
            }
            // The "complete" step is never answered.
        }
    });
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    // The add-user probe after link-up (execute, then a cancel) is not counted here.
    assert_eq!(
        x.account_commands_checked(Duration::from_secs(3)).await,
        xmpp::AccountCommands::Allowed
    );
    let probe_cancelled = |seen: &[Element]| {
        seen.iter().any(|el| {
            el.get_child("command", "http://jabber.org/protocol/commands")
                .and_then(|c| c.attr("action"))
                == Some("cancel")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !probe_cancelled(&seen.lock().unwrap()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.lock().unwrap().clear();
    let r = x.create_account("someone", "pw-123456").await;
    assert!(matches!(r, Err(XmppError::Timeout)), "{r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let actions: Vec<(String, Option<String>)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|el| el.get_child("command", "http://jabber.org/protocol/commands"))
        .map(|c| {
            (
                c.attr("action").unwrap_or("").to_owned(),
                c.attr("sessionid").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("execute".to_owned(), None),
            ("complete".to_owned(), Some("sess-1".to_owned())),
            ("cancel".to_owned(), Some("sess-1".to_owned())),
        ]
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_keepalive_is_sent_while_idle() {
    crate::init_tracing();
    let server = Prosody::start(Default::default());
    // A byte-recording proxy between us and Prosody's component port.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap().to_string();
    let upstream = server.component_addr;
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sent2 = sent.clone();
    tokio::spawn(async move {
        let (mut down, _) = listener.accept().await.unwrap();
        let mut up = TcpStream::connect(upstream).await.unwrap();
        let mut buf = [0u8; 4096];
        let mut back = [0u8; 4096];
        loop {
            tokio::select! {
                n = down.read(&mut buf) => {
                    let n = n.unwrap_or(0);
                    if n == 0 { break; }
                    sent2.lock().unwrap().extend_from_slice(&buf[..n]);
                    if up.write_all(&buf[..n]).await.is_err() { break; }
                }
                n = up.read(&mut back) => {
                    let n = n.unwrap_or(0);
                    if n == 0 { break; }
                    if down.write_all(&back[..n]).await.is_err() { break; }
                }
            }
        }
    });
    let mut c = server.config(AccountsMode::Component, BindingMode::C2s);
    c.component_addr = proxy_addr;
    c.keepalive = Duration::from_millis(150);
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(c, shutdown.clone());
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    let before = sent.lock().unwrap().len();
    // Three keepalives on a silent link (150 ms apart): wait for them with a deadline that a
    // loaded machine cannot miss, rather than sleeping a fixed time and counting.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let bytes = sent.lock().unwrap()[before..].to_vec();
        let spaces = bytes.iter().filter(|b| **b == b' ').count();
        if spaces >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {spaces} keepalive spaces in {:?}",
            String::from_utf8_lossy(&bytes)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pings on silence keep the link up; it never dropped.
    assert_eq!(x.link_stats(), (1, 0));
    shutdown.cancel();
}

/// A c2s server that offers only PLAIN, without TLS: answers the client's stream header with
/// its features and records everything the client sends until it hangs up (or 10 s pass).
async fn plain_only_c2s(listener: TcpListener) -> Vec<u8> {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The client's stream header.
    while !String::from_utf8_lossy(&got).contains("<stream:stream") || !got.ends_with(b">") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client hung up before its stream header");
        got.extend_from_slice(&buf[..n]);
    }
    s.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' id='fake-c2s' from='example.test' \
          version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
          <mechanism>PLAIN</mechanism></mechanisms></stream:features>",
    )
    .await
    .unwrap();
    let mut after = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => after.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_is_refused_without_tls_unless_allowed() {
    for allow in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(plain_only_c2s(listener));
        let mut c = cfg("127.0.0.1:1", Duration::from_secs(3));
        c.c2s_addr = addr;
        c.allow_plain_without_tls = allow;
        let r = xmpp::check_login(&c, "alice", "secret-password").await;
        let sent = String::from_utf8_lossy(&server.await.unwrap()).into_owned();
        if allow {
            // The control: allowed, the client does authenticate with PLAIN (the fake then
            // hangs up, so the login itself fails).
            assert!(
                sent.contains("PLAIN"),
                "PLAIN not used when allowed: {sent}"
            );
            assert!(r.is_err());
        } else {
            assert!(
                matches!(&r, Err(XmppError::SessionFailed(m)) if m.contains("PLAIN")),
                "{r:?}"
            );
            assert!(
                !sent.contains("<auth") && !sent.contains("secret"),
                "credentials sent in the clear: {sent}"
            );
        }
    }
}

/// A result with the right id from another JID than the request went to (a user who learnt or
/// guessed the id) is not taken for the reply: the request gets the server's own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_another_jid_is_not_taken_for_the_servers() {
    let (listener, x, shutdown) = started_on_fake(Duration::from_secs(2)).await;
    tokio::spawn(async move {
        let mut s = accept(&listener).await;
        s.send(&Handshake::new()).await.unwrap();
        while let Some(Ok(el)) = s.next().await {
            let Some(id) = el.attr("id").map(str::to_owned) else {
                continue;
            };
            let reply = |from: &str, kind: &str, child: Element| {
                Element::builder("iq", NS)
                    .attr("type".try_into().unwrap(), kind)
                    .attr("id".try_into().unwrap(), id.as_str())
                    .attr("from".try_into().unwrap(), from)
                    .attr("to".try_into().unwrap(), "register.example.test")
                    .append(child)
                    .build()
            };
            // First a forged answer from a user that would carry the command through (the form
            // at the first step, success at the second), then the server's refusal.
            let cmd = el.get_child("command", "http://jabber.org/protocol/commands");
            let forged = if cmd.and_then(|c| c.attr("action")) == Some("execute") {
                "<command xmlns='http://jabber.org/protocol/commands' status='executing' \
                 sessionid='sess-1'><x xmlns='jabber:x:data' type='form'/></command>"
            } else {
                "<command xmlns='http://jabber.org/protocol/commands' status='completed' \
                 sessionid='sess-1'><note type='info'>Operation finished successfully.</note>\
                 </command>"
            };
            let forged: Element = forged.parse().unwrap();
            s.send(&reply("mallory@example.test/x", "result", forged))
                .await
                .unwrap();
            let error = Element::builder("error", NS)
                .attr("type".try_into().unwrap(), "auth")
                .append(
                    Element::builder("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas").build(),
                )
                .build();
            s.send(&reply("example.test", "error", error))
                .await
                .unwrap();
        }
    });
    assert!(crate::wait_up(&x, Duration::from_secs(3)).await);
    let r = x.create_account("someone", "pw-123456").await;
    assert!(r.is_err(), "the forged success was taken: {r:?}");
    assert!(
        !matches!(r, Err(XmppError::Timeout)),
        "the server's answer was not: {r:?}"
    );
    assert_eq!(x.link_stats().0, 1, "the link stayed up");
    shutdown.cancel();
}
