//! The test handler, a server started on a free port, and a line client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tcp_api::{LineHandler, TcpConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `/echo` echoes; `/sleep {"ms","i"}` sleeps then answers `i`; `/big {"kib"}` pads its reply;
/// `/panic` panics; `/now {"i"}` is answered at once; `/thread` and `/thread_now` name the thread that
/// answered (only `/thread_now` is answered at once, when the connection offers it); `/meet {"n"}` waits (5 s at most) until `n`
/// requests run at once; any other path is answered as unknown. [`Running`] counts the requests
/// in the handler, so a test waits for a request to be in flight instead of sleeping.
pub struct Test(Arc<Running>);

/// The requests of one server inside the handler: now, and the most at once.
#[derive(Default)]
pub struct Running {
    now: AtomicUsize,
    peak: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Running {
    /// Waits (5 s at most) until `n` requests are in the handler now.
    pub async fn reach(&self, n: usize) {
        let now = || self.now.load(Ordering::SeqCst) >= n;
        assert!(self.within_5s(now).await, "{n} requests never ran at once");
    }

    /// Whether `n` requests were in the handler at once within 5 s (now or earlier: the first
    /// of them to leave must not strand the others).
    async fn met(&self, n: usize) -> bool {
        self.within_5s(|| self.peak() >= n).await
    }

    async fn within_5s(&self, done: impl Fn() -> bool) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if done() {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_ok()
    }

    /// The most requests that were in the handler at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Counts a request in until the guard is dropped (also when the handler panics).
    fn enter(&self) -> impl Drop + '_ {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.changed.notify_waiters();
        Inside(self)
    }
}

struct Inside<'a>(&'a Running);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// How many `/now` requests `answer_now` answered (only one test sends them).
pub static NOW_ANSWERED: AtomicUsize = AtomicUsize::new(0);

impl Test {
    async fn reply(&self, path: &str, body: Value) -> Value {
        match path {
            "/echo" => json!({"result": 0, "body": body}),
            "/sleep" => {
                let ms = body["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json!({"result": 0, "i": body["i"]})
            }
            "/big" => {
                let kib = body["kib"].as_u64().unwrap_or(16) as usize;
                json!({"result": 0, "pad": "x".repeat(kib * 1024)})
            }
            "/meet" => {
                let n = body["n"].as_u64().unwrap_or(1) as usize;
                let met = self.0.met(n).await;
                json!({"result": if met { 0 } else { 1 }})
            }
            "/panic" => panic!("test handler panics on purpose"),
            "/thread" | "/thread_now" => {
                json!({"result": 0, "thread": thread_name(), "task": thread_task()})
            }
            "/now" => json!({"result": 0, "now": body["i"]}),
            other => json!({"result": 2, "unknown": other}),
        }
    }
}

impl LineHandler for Test {
    async fn handle(&self, path: &str, body: Value, _peer: SocketAddr) -> Value {
        let _inside = self.0.enter();
        self.reply(path, body).await
    }

    /// `/now {"i"}` is answered at once when the connection offers it (counted in
    /// [`NOW_ANSWERED`]), else by `handle`, with the same reply.
    fn answer_now(&self, path: &str, json: &str, _peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        if path == "/thread_now" {
            let reply = json!({"result": 0, "thread": thread_name(), "task": thread_task()});
            out.extend_from_slice(reply.to_string().as_bytes());
            return true;
        }
        if path != "/now" {
            return false;
        }
        let Ok(body) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        out.extend_from_slice(
            json!({"result": 0, "now": body["i"]})
                .to_string()
                .as_bytes(),
        );
        NOW_ANSWERED.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn malformed(&self) -> Value {
        json!({"result": 2, "malformed": true})
    }
}

pub struct Server {
    pub addr: SocketAddr,
    /// The requests inside the handler.
    pub running: Arc<Running>,
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
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The default config, changed by `f` (one test's limits).
pub fn config(f: impl FnOnce(&mut TcpConfig)) -> TcpConfig {
    let mut cfg = TcpConfig::default();
    f(&mut cfg);
    cfg
}

/// A server started with `cfg`, and one client connected to it.
pub async fn start_connected(cfg: TcpConfig) -> (Server, Client) {
    let srv = start(cfg).await;
    let c = Client::connect(srv.addr).await;
    (srv, c)
}

/// Starts a server. `TCP_API_TEST_THREADS=N` in the environment serves every test's
/// connections on N threads of the listener's own (`TcpConfig::threads`), so that CI runs the
/// whole suite both ways.
pub async fn start(mut cfg: TcpConfig) -> Server {
    if let Some(n) = std::env::var("TCP_API_TEST_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        cfg.threads = n;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let running = Arc::new(Running::default());
    let task = tokio::spawn(tcp_api::serve(
        listener,
        cfg,
        Arc::new(Test(running.clone())),
        shutdown.clone(),
    ));
    Server {
        addr,
        running,
        shutdown,
        task: Some(task),
    }
}

/// A connected line client.
pub struct Client {
    pub rd: BufReader<OwnedReadHalf>,
    pub wr: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
        Self {
            rd: BufReader::new(rd),
            wr,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    /// The next reply line, parsed; panics after 5 s or at EOF.
    pub async fn reply(&mut self) -> Value {
        self.try_reply().await.expect("connection closed")
    }

    /// The next reply line, or `None` at EOF / reset; panics after 5 s.
    pub async fn try_reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.rd.read_line(&mut line))
            .await
            .expect("no reply within 5 s");
        match n {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                assert!(line.ends_with('\n'), "{line:?}");
                Some(serde_json::from_str(&line).expect("reply is JSON"))
            }
        }
    }

    /// Whether the server closes the connection within `within` (EOF or reset, no data).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(within, self.rd.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// The current thread's name (`""` when it has none).
pub fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// The current thread's entry in `/proc`, like `/proc/1234/task/1240`.
pub fn thread_task() -> String {
    std::fs::read_link("/proc/thread-self")
        .map(|p| format!("/proc/{}", p.display()))
        .unwrap_or_default()
}

pub fn malformed() -> Value {
    json!({"result": 2, "malformed": true})
}
