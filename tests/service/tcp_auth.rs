//! The TCP API beyond one host (issue 18, point 7), written as the attacks it stops: a host
//! admitted by `tcp.allow` but without the backends' shared secret checks tokens and lists users;
//! a network observer reads tokens off a plaintext connection.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{assert_signed, Env, Opts};

const SECRET: &str = "backend-secret-0123456789";

/// A service whose TCP listener asks for `/auth` (and TLS when `tls`); the secret's file lives
/// in the returned directory.
async fn start(tls: bool) -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tcp_auth_token");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let env = Env::start_tuned(Opts::default(), |c| {
        c.tcp.auth_token_file = file.display().to_string();
        c.tcp.tls = tls;
    })
    .await;
    (env, dir)
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(c: &mut BufReader<S>, lines: &str) {
    c.get_mut().write_all(lines.as_bytes()).await.unwrap();
    c.get_mut().flush().await.unwrap();
}

/// The next reply line, checked for `sign`; `None` at the end of the connection.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(c: &mut BufReader<S>) -> Option<Value> {
    let mut line = String::new();
    if c.read_line(&mut line).await.unwrap_or(0) == 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_signed(&v);
    Some(v)
}

fn verify(token: &str) -> String {
    format!("/verify_access_token {}\n", json!({"access_token": token}))
}

fn auth(secret: &str) -> String {
    format!("/auth {}\n", json!({"token": secret}))
}

#[tokio::test]
async fn a_backend_without_the_shared_secret_gets_nothing_but_the_refusal() {
    let (env, _dir) = start(false).await;
    let (token, _, _) = env.account("auth-cam", 2).await;
    let addr = env.server().addrs.tcp;
    let users = format!(
        "/get_users {}\n",
        json!({"access_token": token, "user_name_ls": ["auth-cam"]})
    );
    for (what, first) in [
        ("no /auth, a token check", verify(&token)),
        ("no /auth, a user lookup", users.clone()),
        ("a wrong secret", auth("backend-secret-0123456788")),
        ("a prefix of the secret", auth("backend-secret")),
        ("the secret as a number", "/auth {\"token\":1}\n".to_owned()),
        ("/auth without a body", "/auth\n".to_owned()),
        ("not JSON", "/auth backend-secret-0123456789\n".to_owned()),
    ] {
        let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
        // Whatever comes after the refused first line is never answered.
        send(&mut c, &format!("{first}{}{users}", verify(&token))).await;
        let v = reply(&mut c).await.expect("a refusal");
        assert_eq!(v["result"], 100, "{what}");
        assert!(v.get("validate").is_none(), "{what}");
        assert_eq!(
            reply(&mut c).await,
            None,
            "{what}: closed after the refusal"
        );
    }
    // The backend with the secret: /auth, then the usual protocol, pipelined in one write; blank
    // keep-alive lines before /auth are ignored.
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    send(
        &mut c,
        &format!(
            "\n{}{}{}{users}",
            auth(SECRET),
            verify(&token),
            verify(&token)
        ),
    )
    .await;
    assert_eq!(reply(&mut c).await.unwrap()["result"], 0, "/auth accepted");
    for _ in 0..2 {
        let v = reply(&mut c).await.unwrap();
        assert_eq!(
            (v["result"].clone(), v["validate"].clone()),
            (json!(0), json!(true))
        );
    }
    let v = reply(&mut c).await.unwrap();
    assert_eq!(v["result"], 0);
    assert_eq!(v["user_info_ls"][0]["user_name"], "auth-cam", "{v}");
    // Once in, a second /auth is just an unknown path.
    send(&mut c, &auth(SECRET)).await;
    assert_eq!(reply(&mut c).await.unwrap()["result"], 2);
}

/// A TLS client trusting the service's (generated) certificate.
async fn tls_connect(env: &Env) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(env.server().app.cfg.data_dir.join("cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(env.server().addrs.tcp).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn a_tls_backend_is_served_and_a_plaintext_one_reads_nothing() {
    let (env, _dir) = start(true).await;
    let (token, _, _) = env.account("tls-cam", 2).await;
    let mut c = BufReader::new(tls_connect(&env).await);
    send(&mut c, &format!("{}{}", auth(SECRET), verify(&token))).await;
    assert_eq!(reply(&mut c).await.unwrap()["result"], 0);
    let v = reply(&mut c).await.unwrap();
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(0), json!(true))
    );
    // Answered from memory the second time, over TLS as well.
    send(&mut c, &verify(&token)).await;
    assert_eq!(reply(&mut c).await.unwrap()["validate"], true);
    // Many pipelined checks, more replies than the socket buffers hold (the connection stops
    // reading while its replies wait): every one arrives over TLS too.
    const N: usize = 3000;
    let (rd, mut wr) = tokio::io::split(c.into_inner());
    let lines = verify(&token).repeat(N);
    let writer = tokio::spawn(async move {
        wr.write_all(lines.as_bytes()).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut rd = BufReader::new(rd);
    for i in 0..N {
        let mut line = String::new();
        assert!(
            rd.read_line(&mut line).await.unwrap() > 0,
            "reply {i} missing"
        );
        assert!(line.contains("\"validate\":true"), "{line}");
    }
    drop(writer.await.unwrap());
    // Without /auth, TLS alone does not let a client in.
    let mut c = BufReader::new(tls_connect(&env).await);
    send(&mut c, &verify(&token)).await;
    assert_eq!(reply(&mut c).await.unwrap()["result"], 100);
    assert_eq!(reply(&mut c).await, None);
    // A plaintext client (or one that does not speak TLS) gets no line of the protocol: at most
    // a TLS alert, then the end of the connection.
    let mut plain = TcpStream::connect(env.server().addrs.tcp).await.unwrap();
    let lines = format!("{}{}", auth(SECRET), verify(&token));
    plain.write_all(lines.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got).await;
    assert!(
        !got.contains(&b'{'),
        "a protocol reply in the clear: {got:?}"
    );
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert: {got:?}"
    );
}
