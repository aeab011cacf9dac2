//! Starts Prosody 0.12 in the foreground with a generated config in a temporary directory.
//!
//! Each instance has its own ports, data and (TLS variant) a self-signed end-entity certificate
//! (CA:FALSE, SAN = the domain) that clients trust through `tls_ca_file`. `restart()` keeps data
//! and ports (for reconnect tests). Drop sends SIGTERM, then SIGKILL, and waits.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{Endpoints, Process};

/// How to run the test server.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Offer STARTTLS with a self-signed certificate and require encryption on c2s.
    pub tls: bool,
    /// With `tls`: offer STARTTLS but accept plaintext c2s too (`c2s_require_encryption =
    /// false`), so a test can see whether a client chose TLS by itself.
    pub tls_optional: bool,
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
            tls_optional: false,
            privileged: true,
            allow_registration: true,
            extra_components: Vec::new(),
        }
    }
}

/// A running Prosody. Its addresses and secret are its [`Endpoints`] (`prosody.domain`,
/// `prosody.c2s_addr`, … through `Deref`).
pub struct Prosody {
    /// Where it listens, the component's name and secret, the certificate to trust.
    pub endpoints: Endpoints,
    /// Prosody's data directory (accounts/, roster/ .dat files).
    pub data_path: PathBuf,
    /// Options it was started with.
    pub opts: ProsodyOptions,
    dir: tempfile::TempDir,
    config: PathBuf,
    process: Process,
}

impl Deref for Prosody {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
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
        let data_path = dir.path().join("data");
        std::fs::create_dir_all(&data_path).expect("data dir");
        let config = dir.path().join("prosody.cfg.lua");
        let mut p = Prosody {
            endpoints: Endpoints::new(dir.path(), opts.tls),
            data_path,
            opts,
            dir,
            config,
            process: Process::new("prosody", Duration::from_secs(5)),
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
                c += &format!("c2s_require_encryption = {}\n", !self.opts.tls_optional);
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
        let mut cmd = Command::new("prosody");
        cmd.arg("--config").arg(&self.config).arg("-F");
        let ports = [self.c2s_addr, self.component_addr];
        let log_file = self.dir.path().join("stdout.log");
        let (dir, process) = (&self.dir, &mut self.process);
        let log = || log_of(dir.path());
        process.spawn(&mut cmd, &log_file, &ports, Duration::from_secs(20), log);
    }

    /// Prosody's log so far (for failing tests).
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn stop(&mut self) {
        self.process.stop()
    }

    /// Stops and starts again with the same config, data and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Whether Prosody's data directory holds an account file for `node`.
    pub fn account_on_disk(&self, node: &str) -> bool {
        self.dat_file("accounts", node).exists()
    }

    /// Prosody's account file of `node` (it may not exist).
    pub fn account_file(&self, node: &str) -> PathBuf {
        self.dat_file("accounts", node)
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

/// Prosody's output and log in `dir` so far.
fn log_of(dir: &std::path::Path) -> String {
    let mut s = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    s += &std::fs::read_to_string(dir.join("prosody.log")).unwrap_or_default();
    s
}

impl super::TestServer for Prosody {
    fn name(&self) -> &'static str {
        "prosody"
    }
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
    fn process(&mut self) -> Option<&mut Process> {
        Some(&mut self.process)
    }
    fn restart(&mut self) {
        Prosody::restart(self)
    }
    fn log(&self) -> String {
        Prosody::log(self)
    }
}
