//! The test handler, a server started on a free port, and a raw-socket client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_api::{Handler, HttpConfig, Reply, Request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Echoes the parsed request; `/slow?ms=N` sleeps first; `/panic` panics; `/png` returns bytes;
/// `/text` returns JSON text written by the handler ([`TEXT`]).
/// `/slow` requests are counted while they sleep ([`Server::slow_running`]), so a test waits for
/// one to be in flight instead of sleeping.
pub struct Echo(Arc<Slow>);

/// The `/slow` requests inside the handler.
#[derive(Default)]
pub struct Slow {
    now: AtomicUsize,
    changed: Notify,
}

impl Handler for Echo {
    fn routes(&self) -> &[&'static str] {
        &["/echo", "/slow", "/panic", "/png", "/text"]
    }

    async fn handle(&self, req: Request) -> Reply {
        match req.path.as_str() {
            "/slow" => {
                let ms = req.param("ms").and_then(|m| m.parse().ok()).unwrap_or(0);
                self.0.now.fetch_add(1, Ordering::SeqCst);
                self.0.changed.notify_waiters();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.0.now.fetch_sub(1, Ordering::SeqCst);
                Reply::Json(json!({"result": 0, "slept": ms}))
            }
            "/panic" => panic!("test handler panics on purpose"),
            "/text" => Reply::JsonText(bytes::Bytes::from_static(TEXT)),
            "/png" => Reply::Body {
                content_type: "image/png".into(),
                body: bytes::Bytes::from_static(b"\x89PNG"),
                headers: vec![
                    ("Cache-Control".into(), "max-age=5".into()),
                    ("X-Verify-Code-Id".into(), "abc".into()),
                    ("Bad Header".into(), "x".into()),
                ],
            },
            _ => Reply::Json(json!({
                "result": 0,
                "method": format!("{:?}", req.method),
                "params": req.params,
                "cookies": req.cookies,
                "client_ip": req.client_ip.to_string(),
                "request_id": req.request_id,
                "x_test": req.header("x-test"),
            })),
        }
    }

    fn error_body(&self, status: u16) -> Value {
        json!({"result": 2, "status": status})
    }
}

/// The body `/text` answers, byte for byte (keys out of order, spaces kept).
pub const TEXT: &[u8] = br#"{"z": 1,"a":"\u00e9"}"#;

/// A running server; shut down when dropped.
pub struct Server {
    pub addr: SocketAddr,
    slow: Arc<Slow>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Waits (`secs` at most) for `serve` to return, and checks it returned `Ok`.
    pub async fn returned(&mut self, secs: u64) {
        let task = self.task.take().expect("serve still running");
        tokio::time::timeout(Duration::from_secs(secs), task)
            .await
            .expect("serve returned")
            .unwrap()
            .unwrap();
    }

    /// Waits (10 s at most) until a `/slow` request is inside the handler.
    pub async fn slow_running(&self) {
        let wait = async {
            loop {
                let changed = self.slow.changed.notified();
                if self.slow.now.load(Ordering::SeqCst) > 0 {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the /slow request never reached the handler");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The default config, changed by `f` (one test's limits).
pub fn config(f: impl FnOnce(&mut HttpConfig)) -> HttpConfig {
    let mut cfg = HttpConfig::default();
    f(&mut cfg);
    cfg
}

pub async fn start(cfg: HttpConfig) -> Server {
    start_with_drain(cfg, Duration::from_secs(5)).await
}

pub async fn start_with_drain(cfg: HttpConfig, drain: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let slow = Arc::new(Slow::default());
    let task = tokio::spawn(http_api::serve(
        listener,
        cfg,
        Arc::new(Echo(slow.clone())),
        shutdown.clone(),
        drain,
    ));
    Server {
        addr,
        slow,
        shutdown,
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends `request` on a new connection and reads until the server closes it (10 s at most).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_to_close(&mut s).await
}

/// Reads until EOF, a reset, or 10 s.
pub async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection not closed within 10 s; got {out:?}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text`.
pub fn status(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The body of the first response in `text` (assumes a Content-Length framed reply).
pub fn body(text: &str) -> Value {
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A header of the first response in `text` (name lower-case).
pub fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.split_once("\r\n\r\n").map(|(h, _)| h).unwrap_or(text);
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
