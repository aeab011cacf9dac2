//! The `register` binary killed with SIGKILL in the middle of the stream, then started again
//! on the same data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xmpp::testkit::{Prosody, ProsodyOptions};

use super::{check_consistent, free_port, join, verify_token, write_toml, Client, Stream};
use crate::harness::{test_config, wait_binary_ready, Opts};

/// Text without terminal colour sequences (the binary's log).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Binary {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Binary {
    fn start(cfg: &Path, secret: &str, log: PathBuf) -> Binary {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(cfg)
            .env("REGISTER_XMPP__COMPONENT_SECRET", secret)
            // The stream binds by name: the open bind of old clients (bind tokens: bind_tokens.rs).
            .env("REGISTER_BINDING__CONSENT", "none")
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Binary { child, log }
    }

    async fn wait_ready(&mut self, admin: u16) {
        let log = self.log.clone();
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_binary_ready(&mut self.child, &format!("127.0.0.1:{admin}"), log_text).await;
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap(); // SIGKILL
        let status = self.child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_killed_mid_stream() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let c = test_config(&prosody, dir.path().join("data"), Opts::default()).await;
    let (hp, tp, ap) = (free_port(), free_port(), free_port());
    let toml = write_toml(dir.path(), &c, hp, tp, ap);
    let log = dir.path().join("register.log");
    let mut bin = Binary::start(&toml, &prosody.secret, log.clone());
    bin.wait_ready(ap).await;

    // The test reads the database directly (WAL: beside the service's own connections).
    let store = crate::harness::direct_store(&c).await;
    let stream = Stream::new(Client::new(&c.data_dir, hp));
    let tasks = stream.spawn("k9", 5, 4);
    // Three kills, each when some operation is half-way; started again at once on the same data.
    let mut kills = Vec::new();
    for (n, pairs_only) in [(6, false), (14, true), (22, true)] {
        let caught = stream.fault_point(n, store.as_ref(), pairs_only).await;
        bin.kill9().await;
        kills.push(format!(
            "kill after {} acked registrations ({caught})",
            stream.acked.load(Ordering::SeqCst)
        ));
        bin = Binary::start(&toml, &prosody.secret, log.clone());
        bin.wait_ready(ap).await;
        // A fresh client: no pooled connection to the dead process.
        *stream.client.lock().unwrap() = Client::new(&c.data_dir, hp);
    }
    join(tasks).await;

    // The run at start repairs what the kill left; wait until nothing unfinished is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = store.unfinished(i64::MAX).await.unwrap();
        if a.is_empty() && b.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left unfinished: {a:?} {b:?}\n{}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::new(&c.data_dir, hp);
    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    // Tokens handed out before and after the kill still verify.
    let mut tokens_ok = 0;
    for (name, (token, jid, _)) in &res.logins {
        let v = verify_token(([127, 0, 0, 1], tp).into(), token).await;
        assert_eq!(v["result"], 0, "token of {name}: {v}");
        assert_eq!(v["jid"], jid.as_str());
        tokens_ok += 1;
    }
    let found = check_consistent(&prosody, store.as_ref(), &client, &res).await;
    let log = strip_ansi(&bin.log_text());
    let repaired_lines: Vec<&str> = log.lines().filter(|l| l.contains("reconciled")).collect();
    let (regs_acked, binds_acked) = res.acked();
    println!(
        "binary_killed_mid_stream: {} requests; {} names registered + {} pairs bound; acknowledged \
         {} + {} and {} logins; refused {:?}, no reply {}",
        res.sent,
        res.registered.len(),
        res.bound.len(),
        regs_acked,
        binds_acked,
        res.logins.len(),
        res.errors,
        res.no_reply
    );
    for k in &kills {
        println!("  {k}");
    }
    println!("  no-reply samples: {:?}", res.no_reply_samples);
    println!("  found intact: {found:?}; tokens verified over TCP: {tokens_ok}");
    println!(
        "  repaired at start: {} records{}",
        repaired_lines.len(),
        log.lines()
            .filter(|l| l.contains("reconciler run"))
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    );
    for l in &repaired_lines {
        println!("    {l}");
    }
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    assert!(res.no_reply > 0, "the kill hit no request");
    bin.kill9().await;
}
