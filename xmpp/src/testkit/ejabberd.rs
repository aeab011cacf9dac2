//! Starts ejabberd (Debian's 23.01) in the foreground with a generated config in a temporary
//! directory, as XMPP-NOTES.md describes: not through `ejabberdctl` (which ignores a custom config
//! and insists on root or the `ejabberd` user) but `erl … -s ejabberd` with the config, log and
//! Mnesia spool paths pointing into the directory.
//!
//! The Erlang node runs without distribution (`nonode@nohost`, no `-sname`): no epmd, no cookie,
//! nothing shared, so any number of instances run side by side; each has its own ports and Mnesia
//! directory. `restart()` keeps data and ports (SIGTERM, ~2.5 s); Drop kills at once (SIGKILL).
//!
//! What the config gives the component (the same an operator must configure):
//! - `ejabberd_service` listener with the component name and password;
//! - `acl: provisioner: server: [component]` and `access_rules: configure: allow: provisioner`
//!   for XEP-0133 add-user / delete-user (`mod_adhoc` + `mod_configure`);
//! - `mod_privilege: roster: both: privileged` (rule allowing the same ACL) for XEP-0356;
//! - `mod_register` open to all and `registration_timeout: infinity` for XEP-0077.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::prosody::{accepts, free_port, make_cert};
use crate::{AccountsMode, BindingMode, C2sTls, XmppConfig};

/// How to run the test server.
#[derive(Debug, Clone)]
pub struct EjabberdOptions {
    /// Offer STARTTLS with a self-signed certificate and require it on c2s.
    pub tls: bool,
    /// Grant the component the XEP-0356 roster permission `both`.
    pub privileged: bool,
    /// Allow XEP-0077 in-band registration.
    pub allow_registration: bool,
}

impl Default for EjabberdOptions {
    fn default() -> Self {
        EjabberdOptions {
            tls: false,
            privileged: true,
            allow_registration: true,
        }
    }
}

/// A running ejabberd.
pub struct Ejabberd {
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
    /// Options it was started with.
    pub opts: EjabberdOptions,
    dir: tempfile::TempDir,
    erl_libs: PathBuf,
    child: Option<Child>,
}

/// The directory holding `ejabberd-*/ebin` (Debian: `/usr/lib/x86_64-linux-gnu`), or
/// `$EJABBERD_ERL_LIBS`.
fn find_erl_libs() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("EJABBERD_ERL_LIBS") {
        return Some(PathBuf::from(dir));
    }
    let has_ejabberd = |dir: &Path| {
        std::fs::read_dir(dir).ok().is_some_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("ejabberd-")
                    && e.path().join("ebin/ejabberd.app").exists()
            })
        })
    };
    let mut candidates = vec![PathBuf::from("/usr/lib")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    candidates.into_iter().find(|d| has_ejabberd(d))
}

fn have_erl() -> bool {
    Command::new("sh")
        .args(["-c", "command -v erl"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian's ejabberd when it is missing; returns the `ERL_LIBS` directory.
fn ensure_installed() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let (true, Some(libs)) = (have_erl(), find_erl_libs()) {
        return libs;
    }
    super::apt_install("ejabberd", "ejabberd");
    find_erl_libs().expect("ejabberd installed but no ejabberd-*/ebin found under /usr/lib")
}

fn yaml(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Ejabberd {
    /// Writes the config and starts the server; returns when both ports accept connections.
    pub fn start(opts: EjabberdOptions) -> Ejabberd {
        let erl_libs = ensure_installed();
        let dir = tempfile::Builder::new()
            .prefix("register-ejabberd-")
            .tempdir()
            .expect("tempdir");
        let domain = "example.test".to_owned();
        let component = format!("register.{domain}");
        let secret = format!("secret-{:016x}", rand::random::<u64>());
        let c2s_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let component_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let ca_file = opts.tls.then(|| make_cert(dir.path(), &domain));
        let mut e = Ejabberd {
            domain,
            component,
            secret,
            component_addr,
            c2s_addr,
            ca_file,
            opts,
            dir,
            erl_libs,
            child: None,
        };
        std::fs::write(e.config_path(), e.config_text()).expect("writing ejabberd config");
        e.spawn();
        e
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("ejabberd.yml")
    }

    fn config_text(&self) -> String {
        let d = self.dir.path();
        let mut c = String::new();
        c += &format!("hosts:\n  - {}\n", yaml(&self.domain));
        c += "loglevel: info\nlog_rotate_count: 0\n";
        c += "registration_timeout: infinity\n";
        c += "auth_method: internal\nauth_password_format: scram\n";
        if self.ca_file.is_some() {
            c += &format!(
                "certfiles:\n  - {}\n  - {}\n",
                yaml(&d.join("certs/server.crt").to_string_lossy()),
                yaml(&d.join("certs/server.key").to_string_lossy())
            );
        }
        c += "listen:\n";
        c += &format!(
            "  -\n    port: {}\n    ip: \"127.0.0.1\"\n    module: ejabberd_c2s\n",
            self.c2s_addr.port()
        );
        if self.ca_file.is_some() {
            c += "    starttls: true\n    starttls_required: true\n";
        } else {
            c += "    starttls: false\n";
        }
        c += &format!(
            "  -\n    port: {}\n    ip: \"127.0.0.1\"\n    module: ejabberd_service\n    hosts:\n      {}:\n        password: {}\n",
            self.component_addr.port(),
            yaml(&self.component),
            yaml(&self.secret)
        );
        c += &format!(
            "acl:\n  provisioner:\n    server:\n      - {}\n",
            yaml(&self.component)
        );
        c += "access_rules:\n";
        c += "  configure:\n    allow: provisioner\n";
        c += "  privileged:\n    allow: provisioner\n";
        c += if self.opts.allow_registration {
            "  register:\n    allow: all\n"
        } else {
            "  register:\n    deny: all\n"
        };
        c += "modules:\n";
        c += "  mod_adhoc: {}\n  mod_configure: {}\n  mod_disco: {}\n  mod_last: {}\n";
        c += "  mod_ping: {}\n  mod_roster: {}\n";
        c += "  mod_register:\n    access: register\n    ip_access: all\n";
        if self.opts.privileged {
            c += "  mod_privilege:\n    roster:\n      both: privileged\n";
        }
        c
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("stdout.log")).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new("erl")
            .args(["-noinput", "+K", "true", "-mnesia", "dir"])
            .arg(format!("\"{}\"", d.join("spool").to_string_lossy()))
            .args(["-s", "ejabberd"])
            .env("HOME", d)
            .env("EJABBERD_CONFIG_PATH", self.config_path())
            .env("EJABBERD_LOG_PATH", d.join("ejabberd.log"))
            .env("ERL_LIBS", &self.erl_libs)
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting erl (ejabberd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(accepts(self.c2s_addr) && accepts(self.component_addr)) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ejabberd exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ejabberd did not open its ports; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ejabberd's output and log so far (for failing tests).
    pub fn log(&self) -> String {
        let d = self.dir.path();
        ["stdout.log", "ejabberd.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
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

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (gracefully, so Mnesia keeps the data) and starts again with the same config, data
    /// and ports.
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
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.kill();
    }
}

impl super::TestServer for Ejabberd {
    fn name(&self) -> &'static str {
        "ejabberd"
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
        Ejabberd::config(self, accounts, binding)
    }
    fn stop(&mut self) {
        Ejabberd::stop(self)
    }
    fn restart(&mut self) {
        Ejabberd::restart(self)
    }
    fn is_running(&mut self) -> bool {
        Ejabberd::is_running(self)
    }
    fn log(&self) -> String {
        Ejabberd::log(self)
    }
}
