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

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{Endpoints, Process};

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

/// A running ejabberd. Its addresses and secret are its [`Endpoints`] (`ejabberd.domain`, …
/// through `Deref`).
pub struct Ejabberd {
    /// Where it listens, the component's name and secret, the certificate to trust.
    pub endpoints: Endpoints,
    /// Options it was started with.
    pub opts: EjabberdOptions,
    dir: tempfile::TempDir,
    erl_libs: PathBuf,
    process: Process,
}

impl Deref for Ejabberd {
    type Target = Endpoints;
    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
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
        let mut e = Ejabberd {
            endpoints: Endpoints::new(dir.path(), opts.tls),
            opts,
            dir,
            erl_libs,
            process: Process::new("ejabberd", Duration::from_secs(10)),
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
        let mut cmd = Command::new("erl");
        cmd.args(["-noinput", "+K", "true", "-mnesia", "dir"])
            .arg(format!("\"{}\"", d.join("spool").to_string_lossy()))
            .args(["-s", "ejabberd"])
            .env("HOME", d)
            .env("EJABBERD_CONFIG_PATH", self.config_path())
            .env("EJABBERD_LOG_PATH", d.join("ejabberd.log"))
            .env("ERL_LIBS", &self.erl_libs)
            .current_dir(d);
        let ports = [self.c2s_addr, self.component_addr];
        let log = || log_of(d);
        let log_file = d.join("stdout.log");
        self.process
            .spawn(&mut cmd, &log_file, &ports, Duration::from_secs(30), log);
    }
}

/// ejabberd's output and logs in `dir` so far.
fn log_of(dir: &Path) -> String {
    ["stdout.log", "ejabberd.log", "error.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.process.kill();
    }
}

impl super::TestServer for Ejabberd {
    fn name(&self) -> &'static str {
        "ejabberd"
    }
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
    fn process(&mut self) -> Option<&mut Process> {
        Some(&mut self.process)
    }
    /// Stops (gracefully, so Mnesia keeps the data) and starts again with the same config, data
    /// and ports.
    fn restart(&mut self) {
        self.process.stop();
        self.spawn();
    }
    fn log(&self) -> String {
        log_of(self.dir.path())
    }
}
