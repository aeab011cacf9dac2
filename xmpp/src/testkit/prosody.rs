//! Starts Prosody 0.12 in the foreground with a generated config in a temporary directory.
//!
//! Each instance has its own ports, data and (TLS variant) a self-signed end-entity certificate
//! (CA:FALSE, SAN = the domain) that clients trust through `tls_ca_file`. `restart()` keeps data
//! and ports (for reconnect tests). Drop sends SIGTERM, then SIGKILL, and waits.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{AccountsMode, BindingMode, C2sTls, XmppConfig};

/// How to run the test server.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Offer STARTTLS with a self-signed certificate and require encryption on c2s.
    pub tls: bool,
    /// Grant the component the XEP-0356 roster permission `both`.
    pub privileged: bool,
    /// Allow XEP-0077 in-band registration.
    pub allow_registration: bool,
    /// More component JIDs beside `register.<domain>` (e.g. one per service instance, since
    /// Prosody accepts one connection per component): each gets the same secret, admin rights
    /// and (with `privileged`) the same roster permission.
    pub extra_components: Vec<String>,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            tls: false,
            privileged: true,
            allow_registration: true,
            extra_components: Vec::new(),
        }
    }
}

/// A running Prosody.
pub struct Prosody {
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
    /// Prosody's data directory (accounts/, roster/ .dat files).
    pub data_path: PathBuf,
    /// Options it was started with.
    pub opts: ProsodyOptions,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
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

fn lua(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Installs prosody and prosody-modules with apt-get when `prosody` is not on PATH.
fn ensure_installed() {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let found = Command::new("sh")
        .args(["-c", "command -v prosody"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return;
    }
    super::apt_install("prosody prosody-modules", "prosody");
}

impl Prosody {
    /// Writes the config and starts the server; returns when both ports accept connections.
    pub fn start(opts: ProsodyOptions) -> Prosody {
        ensure_installed();
        let dir = tempfile::Builder::new()
            .prefix("register-prosody-")
            .tempdir()
            .expect("tempdir");
        let domain = "example.test".to_owned();
        let component = format!("register.{domain}");
        let secret = format!("secret-{:016x}", rand::random::<u64>());
        let c2s_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let component_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let data_path = dir.path().join("data");
        std::fs::create_dir_all(&data_path).expect("data dir");
        let ca_file = opts.tls.then(|| make_cert(dir.path(), &domain));
        let config = dir.path().join("prosody.cfg.lua");
        let mut p = Prosody {
            domain,
            component,
            secret,
            component_addr,
            c2s_addr,
            ca_file,
            data_path,
            opts,
            dir,
            config,
            child: None,
        };
        std::fs::write(&p.config, p.config_text()).expect("writing prosody config");
        p.spawn();
        p
    }

    fn config_text(&self) -> String {
        let d = self.dir.path();
        let path = |name: &str| lua(&d.join(name).to_string_lossy());
        let mut c = String::new();
        c += "run_as_root = true\n";
        c += &format!("pidfile = {}\n", path("prosody.pid"));
        c += &format!("data_path = {}\n", lua(&self.data_path.to_string_lossy()));
        c += &format!("log = {{ debug = {} }}\n", path("prosody.log"));
        c += "interfaces = { \"127.0.0.1\" }\n";
        c += &format!(
            "c2s_ports = {{ {} }}\nc2s_direct_tls_ports = {{ }}\n",
            self.c2s_addr.port()
        );
        c += &format!("component_ports = {{ {} }}\n", self.component_addr.port());
        c += "component_interfaces = { \"127.0.0.1\" }\ns2s_ports = { }\n";
        let components: Vec<&String> = std::iter::once(&self.component)
            .chain(&self.opts.extra_components)
            .collect();
        let admins: Vec<String> = components.iter().map(|c| lua(c)).collect();
        c += &format!("admins = {{ {} }}\n", admins.join("; "));
        c += "modules_enabled = { \"roster\"; \"saslauth\"; \"disco\"; \"register\"; \"offline\"; \"ping\"; \"admin_adhoc\"; \"posix\"; \"privilege\"; \"tls\" }\n";
        c += "modules_disabled = { \"s2s\" }\n";
        c += "network_settings = { nagle = false }\n";
        c += "authentication = \"internal_hashed\"\ndefault_iteration_count = 4096\n";
        c += &format!("allow_registration = {}\n", self.opts.allow_registration);
        c += "min_seconds_between_registrations = 0\nregistration_throttle_max = 100000\n";
        match &self.ca_file {
            Some(_) => {
                c += &format!(
                    "ssl = {{ certificate = {}; key = {} }}\n",
                    path("certs/server.crt"),
                    path("certs/server.key")
                );
                c += "c2s_require_encryption = true\n";
            }
            None => c += "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n",
        }
        c += &format!("VirtualHost {}\n", lua(&self.domain));
        if self.opts.privileged {
            let entities: Vec<String> = components
                .iter()
                .map(|c| format!("[{}] = {{ roster = \"both\" }}", lua(c)))
                .collect();
            c += &format!("  privileged_entities = {{ {} }}\n", entities.join("; "));
        }
        for comp in &components {
            c += &format!("Component {}\n", lua(comp));
            c += &format!("  component_secret = {}\n", lua(&self.secret));
            c += "  modules_enabled = { \"privilege\" }\n";
        }
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("stdout.log")).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&self.config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting prosody");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(accepts(self.c2s_addr) && accepts(self.component_addr)) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("prosody exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prosody did not open its ports; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Prosody's log so far (for failing tests).
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        s += &std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default();
        s
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Stops and starts again with the same config, data and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
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

    /// Whether Prosody's data directory holds an account file for `node`.
    pub fn account_on_disk(&self, node: &str) -> bool {
        self.dat_file("accounts", node).exists()
    }

    /// The raw roster file of `node` (Lua), empty when none.
    pub fn roster_on_disk(&self, node: &str) -> String {
        std::fs::read_to_string(self.dat_file("roster", node)).unwrap_or_default()
    }

    fn dat_file(&self, store: &str, node: &str) -> PathBuf {
        // Prosody encodes the host and node: '.' → %2e, '-' → %2d.
        let enc = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c.to_string()
                    } else {
                        format!("%{:02x}", c as u32)
                    }
                })
                .collect::<String>()
        };
        self.data_path
            .join(enc(&self.domain))
            .join(store)
            .join(format!("{}.dat", enc(node)))
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

pub(super) fn make_cert(dir: &Path, domain: &str) -> PathBuf {
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

impl super::TestServer for Prosody {
    fn name(&self) -> &'static str {
        "prosody"
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn component(&self) -> &str {
        &self.component
    }
    fn secret(&self) -> &str {
        &self.secret
    }
    fn component_addr(&self) -> SocketAddr {
        self.component_addr
    }
    fn c2s_addr(&self) -> SocketAddr {
        self.c2s_addr
    }
    fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
    fn config(&self, accounts: AccountsMode, binding: BindingMode) -> XmppConfig {
        Prosody::config(self, accounts, binding)
    }
    fn stop(&mut self) {
        Prosody::stop(self)
    }
    fn restart(&mut self) {
        Prosody::restart(self)
    }
    fn is_running(&mut self) -> bool {
        Prosody::is_running(self)
    }
    fn log(&self) -> String {
        Prosody::log(self)
    }
}
