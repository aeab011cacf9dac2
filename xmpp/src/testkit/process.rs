//! What every test server shares: its addresses and secret ([`Endpoints`], with the crate
//! configuration for them) and its process ([`Process`]: started, waited for until its ports
//! accept, stopped with SIGTERM and then SIGKILL). [`stop_child`] and [`wait_link`] serve the
//! service's tests and the bench too.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{AccountsMode, BindingMode, C2sTls, LinkState, XmppConfig};

/// Where a test server listens and what the component needs to connect.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The users' domain.
    pub domain: String,
    /// The component JID.
    pub component: String,
    /// The component secret.
    pub secret: String,
    /// `127.0.0.1:port` of the component port.
    pub component_addr: SocketAddr,
    /// `127.0.0.1:port` of the c2s port.
    pub c2s_addr: SocketAddr,
    /// The certificate to trust (TLS variant).
    pub ca_file: Option<PathBuf>,
}

impl Endpoints {
    /// `example.test` with the component `register.example.test`, a random secret, two free
    /// ports and (with `tls`) a self-signed certificate written under `dir`.
    pub(super) fn new(dir: &Path, tls: bool) -> Endpoints {
        let domain = "example.test".to_owned();
        Endpoints {
            component: format!("register.{domain}"),
            secret: format!("secret-{:016x}", rand::random::<u64>()),
            c2s_addr: ([127, 0, 0, 1], free_port()).into(),
            component_addr: ([127, 0, 0, 1], free_port()).into(),
            ca_file: tls.then(|| make_cert(dir, &domain)),
            domain,
        }
    }

    /// A configuration for this server with the given modes (TLS `Required` with the self-signed
    /// certificate in the TLS variant, plaintext with PLAIN allowed otherwise).
    pub fn config(&self, accounts: AccountsMode, binding: BindingMode) -> XmppConfig {
        XmppConfig {
            domain: self.domain.clone(),
            component: self.component.clone(),
            component_addr: self.component_addr.to_string(),
            component_secret: self.secret.clone(),
            c2s_addr: self.c2s_addr.to_string(),
            c2s_tls: if self.ca_file.is_some() {
                C2sTls::Required
            } else {
                C2sTls::Off
            },
            tls_ca_file: self.ca_file.clone(),
            allow_plain_without_tls: self.ca_file.is_none(),
            accounts,
            binding,
            timeout: Duration::from_secs(5),
            session_idle: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            allow_multiple: false,
            command_sessions: 40,
        }
    }
}

/// A test server's process.
pub struct Process {
    name: &'static str,
    /// How long SIGTERM may take before SIGKILL.
    grace: Duration,
    child: Option<Child>,
}

impl Process {
    pub(super) fn new(name: &'static str, grace: Duration) -> Process {
        Process {
            name,
            grace,
            child: None,
        }
    }

    /// Starts `cmd` (output to `log_file`) and returns once every one of `ports` accepts a
    /// connection; panics with `log()` when the process exits or `within` passes first.
    pub(super) fn spawn(
        &mut self,
        cmd: &mut Command,
        log_file: &Path,
        ports: &[SocketAddr],
        within: Duration,
        log: impl Fn() -> String,
    ) {
        let out = std::fs::File::create(log_file).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + within;
        while !ports.iter().all(|a| accepts(*a)) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{} exited with {status}; log:\n{}", self.name, log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not open its ports; log:\n{}",
                self.name,
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the process (SIGTERM, then SIGKILL after the grace time) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, self.grace);
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Sends SIGTERM to `child`, waits up to `grace` for it to exit, then SIGKILLs and reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// Whether a component link (its state watch, `Xmpp::link_watch`) is (`up`) or is not up within
/// `within`.
pub async fn wait_link(
    mut w: tokio::sync::watch::Receiver<LinkState>,
    up: bool,
    within: Duration,
) -> bool {
    let reached = tokio::time::timeout(within, w.wait_for(|s| (*s == LinkState::Up) == up)).await;
    matches!(reached, Ok(Ok(_)))
}

/// A free loopback port below the ephemeral range (Linux: 32768 and up). A port the kernel picked
/// from that range can be taken as the source port of one of the many connections the tests open
/// before the server binds it, and the server then fails to listen (seen in CI as a refused c2s
/// connection).
/// A port is handed out once per process, so two servers (or a server's two listeners) never get
/// the same one.
pub(super) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let p = 10_000 + rand::random::<u16>() % 22_000;
        if !given.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok() {
            given.push(p);
            return p;
        }
    }
    panic!("no free loopback port below the ephemeral range")
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

/// A self-signed end-entity certificate (CA:FALSE, SAN = `domain`) and its key under
/// `dir/certs/`; returns the certificate's path.
fn make_cert(dir: &Path, domain: &str) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let crt = certs.join("server.crt");
    let key = certs.join("server.key");
    let status = Command::new("timeout")
        .args([
            "30",
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args(["-subj", &format!("/CN={domain}")])
        .args(["-addext", &format!("subjectAltName=DNS:{domain}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(
        status.success(),
        "openssl could not make a test certificate"
    );
    crt
}
