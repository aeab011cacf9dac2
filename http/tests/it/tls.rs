//! TLS with a self-signed certificate: 1.3 and 1.2 work; 1.1 and plain HTTP fail cleanly.

use std::sync::Arc;
use std::time::Duration;

use http_api::tls_config_from_pem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{config, raw, start, Server};

struct Cert {
    pem: String,
    der: rustls_pki_types::CertificateDer<'static>,
}

async fn tls_server() -> (Server, Cert) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = tls_config_from_pem(
        ck.cert.pem().as_bytes(),
        ck.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let srv = start(config(|cfg| {
        cfg.tls = Some(tls);
        cfg.header_read_timeout = Duration::from_secs(2);
    }))
    .await;
    let cert = Cert {
        pem: ck.cert.pem(),
        der: ck.cert.der().clone(),
    };
    (srv, cert)
}

/// A GET of `path` over HTTPS, from a client trusting `cert`.
async fn https_get(srv: &Server, cert: &Cert, path: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .resolve("localhost", srv.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}{path}", srv.addr.port());
    client.get(url).send().await.unwrap()
}

/// A TLS connection to `srv` from a client trusting `cert` and offering `versions`.
async fn tls_connect(
    srv: &Server,
    cert: &Cert,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn https_works_with_a_self_signed_certificate() {
    let (srv, cert) = tls_server().await;
    let resp = https_get(&srv, &cert, "/echo?a=1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["params"], serde_json::json!([["a", "1"]]));
}

#[tokio::test]
async fn tls12_only_client_works() {
    let (srv, cert) = tls_server().await;
    let mut tls = tls_connect(&srv, &cert, &[&rustls::version::TLS12]).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// A TLS 1.1 ClientHello without the `supported_versions` extension.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend([7u8; 32]);
    hello.push(0);
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    hello.extend([0x01, 0x00]);
    let mut handshake = vec![0x01, 0, 0, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls11_is_refused_with_an_alert() {
    let (srv, cert) = tls_server().await;
    let resp = raw(srv.addr, &tls11_client_hello()).await;
    let bytes = resp.as_bytes();
    assert!(
        bytes.is_empty() || bytes[0] == 0x15,
        "expected an alert or a close, got {bytes:?}"
    );
    // Still serving.
    assert_eq!(https_get(&srv, &cert, "/echo").await.status(), 200);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_closed() {
    let (srv, cert) = tls_server().await;
    let resp = raw(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!resp.contains("HTTP/1.1"), "{resp}");
    assert_eq!(https_get(&srv, &cert, "/echo").await.status(), 200);
}

#[tokio::test]
async fn a_stalled_handshake_is_cut() {
    let (srv, _cert) = tls_server().await;
    // Timed from before the connection exists: the 2 s handshake limit cannot have started earlier.
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// A client that sends its whole (too large) body before reading gets a clean 413 over TLS: the
/// upload is not cut off and the connection ends with close_notify, not a reset. On loopback this
/// passed even before the lingering close; the reset it prevents shows with python-requests against
/// the real service (20 oversized POSTs: 8 answered before, 20 after), which
/// scripts/api-session.py checks in CI.
#[tokio::test]
async fn early_413_reaches_a_client_that_sends_everything_first() {
    let (srv, cert) = tls_server().await;
    let body = vec![b'a'; 200_000];
    for _ in 0..10 {
        let mut s = tls_connect(&srv, &cert, rustls::DEFAULT_VERSIONS).await;
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Like those clients, treat a failed upload as a failed request.
        s.write_all(&body)
            .await
            .expect("the upload is not cut off by a reset");
        s.flush().await.expect("flush");
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            matches!(r, Ok(Ok(_))),
            "a clean end, not a reset: {r:?} after {text:?}"
        );
        assert!(text.starts_with("HTTP/1.1 413"), "got {text:?}");
    }
}
