//! Configurations that cannot work are refused by the real binary before anything starts: at
//! start and in `register check`, exit 7 with one line that names the keys.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xmpp::testkit::{Prosody, ProsodyOptions};

/// One test per refused configuration: the TOML and the keys its line must name.
macro_rules! refused {
    ($($name:ident: $toml:expr => [$($key:expr),+];)+) => {
        $(
            #[test]
            fn $name() {
                exits_7_naming($toml, &[$($key),+]);
            }
        )+
    };
}

refused! {
    ibr_without_tls: "[xmpp]\naccounts = \"ibr\"\nc2s_tls = \"off\"\n"
        => ["xmpp.accounts", "xmpp.c2s_tls"];
    fixed_captcha_answer_off_loopback:
        "[http]\nlisten = \"0.0.0.0:8443\"\n[captcha]\nfixed_answer = \"abcde\"\n"
        => ["captcha.fixed_answer", "http.listen"];
    every_address_as_a_trusted_proxy: "[http]\ntrusted_proxies = [\"0.0.0.0/0\"]\n"
        => ["http.trusted_proxies"];
    pool_size_on_sqlite: "[database]\nmax_connections = 4\n"
        => ["database.max_connections", "database.url"];
    https_certificate_with_tls_off:
        "[http]\ntls = false\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
        => ["http.cert_file", "http.tls"];
    tcp_certificate_with_tls_off: "[tcp]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
        => ["tcp.cert_file", "tcp.tls"];
    no_tcp_connections: "[tcp]\nmax_connections = 0\n" => ["tcp.max_connections"];
    captchas_that_expire_at_once: "[captcha]\nttl_secs = 0\n" => ["captcha.ttl_secs"];
    no_bind_allowed: "[binding]\nmax_devices_per_phone = 0\n"
        => ["binding.max_devices_per_phone"];
    audit_kept_no_day: "[audit]\nretention_days = 0\n" => ["audit.retention_days"];
    plain_http_on_the_network_without_a_proxy:
        "[http]\nlisten = \"0.0.0.0:8443\"\ntls = false\n"
        => ["http.tls", "http.listen", "http.trusted_proxies", "http.allow_plaintext"];
    plain_tcp_on_the_network: "[tcp]\nlisten = \"0.0.0.0:8444\"\n"
        => ["tcp.tls", "tcp.listen", "tcp.allow_plaintext"];
    plain_tcp_on_the_network_even_behind_an_allow_list:
        "[tcp]\nlisten = \"[::]:8444\"\ntls = false\nallow = [\"10.0.0.0/8\"]\n"
        => ["tcp.tls", "tcp.listen", "tcp.allow_plaintext"];
}

/// Plain HTTP still starts where nothing crosses the network in the clear unasked: on a
/// loopback listener, behind a TLS-terminating proxy named in `http.trusted_proxies`, and with
/// the explicit `http.allow_plaintext = true`, which is warned about at start. Each serves plain
/// HTTP (a captcha) and stops on SIGTERM.
#[tokio::test]
async fn plain_http_starts_on_loopback_behind_a_proxy_or_when_allowed_with_a_warning() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let cases = [
        ("127.0.0.1", "", false),
        ("0.0.0.0", "trusted_proxies = [\"127.0.0.1\"]\n", false),
        ("0.0.0.0", "allow_plaintext = true\n", true),
    ];
    for (host, extra, warned) in cases {
        let extra = format!("tls = false\n{extra}");
        let mut b = Listening::start(&prosody, "http", host, &extra).await;
        let url = format!("http://127.0.0.1:{}/verify_code", b.port);
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200, "{host} {extra}");
        let (warnings, text) = b
            .stop_and_count_warnings("http.allow_plaintext = true")
            .await;
        assert_eq!(warnings, usize::from(warned), "{host} {extra}:\n{text}");
    }
}

/// The TCP API still starts where no token crosses the network in the clear unasked: plaintext
/// on a loopback listener, TLS on every address, and plaintext on every address with the
/// explicit `tcp.allow_plaintext = true`, which is warned about at start. Each becomes ready (its
/// plaintext listeners answer a token check) and stops on SIGTERM.
#[tokio::test]
async fn plain_tcp_starts_on_loopback_with_tls_or_when_allowed_with_a_warning() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let cases = [
        ("127.0.0.1", "", false),
        ("0.0.0.0", "tls = true\n", false),
        ("0.0.0.0", "allow_plaintext = true\n", true),
    ];
    for (host, extra, warned) in cases {
        let mut b = Listening::start(&prosody, "tcp", host, extra).await;
        if !extra.starts_with("tls") {
            let addr = format!("127.0.0.1:{}", b.port).parse().unwrap();
            let v = crate::harness::tcp_verify(addr, "not-a-token").await;
            assert_eq!(v["result"], 4, "{host} {extra}: {v}");
        }
        let (warnings, text) = b
            .stop_and_count_warnings("tcp.allow_plaintext = true")
            .await;
        assert_eq!(warnings, usize::from(warned), "{host} {extra}:\n{text}");
    }
}

/// The binary, ready, with its `[section]` listener (`http` or `tcp`) moved to `host` and the
/// lines `extra` added to that section.
struct Listening {
    child: tokio::process::Child,
    /// The listener's port (reachable on 127.0.0.1 whatever `host` was).
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Listening {
    async fn start(prosody: &Prosody, section: &str, host: &str, extra: &str) -> Listening {
        let dir = tempfile::tempdir().unwrap();
        let o = crate::harness::Opts::default();
        let (cfg, c) = crate::binary::write_config(prosody, dir.path(), o).await;
        let port = match section {
            "http" => c.http.listen.port(),
            _ => c.tcp.listen.port(),
        };
        let moved = format!("[{section}]\nlisten = \"{host}:{port}\"\n{extra}");
        let toml = std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("[{section}]\nlisten = \"127.0.0.1:{port}\"\n"),
            &moved,
        );
        assert!(toml.contains(&moved), "{toml}");
        std::fs::write(&cfg, toml).unwrap();
        let log = dir.path().join("register.log");
        let secret = &c.xmpp.component_secret;
        let child = crate::harness::ready_binary(&cfg, secret, c.admin.listen, &log).await;
        Listening {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Stops it with SIGTERM (exit 0): the warnings its log holds that name `key`, and the log.
    async fn stop_and_count_warnings(&mut self, key: &str) -> (usize, String) {
        crate::harness::sigterm_exits_0(&mut self.child).await;
        let text = std::fs::read_to_string(&self.log).unwrap();
        let warnings = text
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(key))
            .count();
        (warnings, text)
    }
}

/// Runs the binary (`args` after `--config`) and returns its status, stderr and time taken.
fn run(toml: &str, args: &[&str]) -> (Option<i32>, String, Duration, bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, format!("data_dir = {data:?}\n{toml}")).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded so that a binary that starts anyway fails the test instead of hanging it.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the binary is still running with\n{toml}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, took, data.exists())
}

/// At start and in `register check`: exit 7, one line naming every key, nothing set up. The
/// time to exit is printed, not asserted (speed is measured only by scripts/bench.sh).
fn exits_7_naming(toml: &str, keys: &[&str]) {
    for args in [&[][..], &["check"][..]] {
        let (code, err, took, made_data) = run(toml, args);
        assert_eq!(code, Some(7), "{args:?} with\n{toml}\n{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for\n{toml}\n{err}");
        for k in keys {
            assert!(lines[0].contains(k), "{k} not named for\n{toml}\n{err}");
        }
        assert!(!made_data, "refused before anything was set up:\n{toml}");
        println!(
            "{args:?}: exit 7 after {} ms: {}",
            took.as_millis(),
            lines[0]
        );
    }
}
