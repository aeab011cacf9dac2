//! Register and bind end to end on a real Prosody, beside their references: Prosody's own
//! add-user rate and the raw `Xmpp::bind` rate (driven directly through `xmpp/`), and the Argon2id
//! hash rate alone.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use xmpp::testkit::{Prosody, ProsodyOptions};
use xmpp::{AccountsMode, BindingMode, Party, Xmpp};

use crate::util::{
    enc, form, result_of, signed_form, tls_client, Pool, Service, XmppTarget, CAPTCHA,
};

/// A rate: operations done, failures, elapsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub ok: usize,
    pub failed: usize,
    pub secs: f64,
}

impl Rate {
    /// Two measurements taken in turns, as one.
    pub fn add(&mut self, other: Rate) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.secs += other.secs;
    }

    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
    pub fn line(&self) -> String {
        format!(
            "{:.1}/s ({} in {:.2} s, {} failed)",
            self.per_sec(),
            self.ok,
            self.secs,
            self.failed
        )
    }
}

#[derive(Debug, Default)]
pub struct XmppResults {
    pub argon2: Rate,
    pub prosody_add: Rate,
    pub register: Rate,
    pub login: Rate,
    pub raw_bind_c2s: Rate,
    pub raw_bind_priv: Rate,
    pub bind_c2s: Rate,
    pub bind_priv: Rate,
}

/// Run `n` jobs `job(i)` with `conc` workers, at most `limit` long; counts successes.
async fn run_jobs<F, Fut>(n: usize, conc: usize, limit: Duration, job: F) -> Rate
where
    F: Fn(usize) -> Fut + Clone,
    Fut: std::future::Future<Output = bool>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let workers = (0..conc).map(|_| {
        let (next, job) = (next.clone(), job.clone());
        async move {
            let (mut ok, mut failed) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() > deadline {
                    break;
                }
                if job(i).await {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }
    });
    let r = join_all(workers).await;
    Rate {
        ok: r.iter().map(|x| x.0).sum(),
        failed: r.iter().map(|x| x.1).sum(),
        secs: start.elapsed().as_secs_f64(),
    }
}

async fn link_up(x: &Xmpp) -> bool {
    xmpp::testkit::wait_link(x.link_watch(), true, Duration::from_secs(20)).await
}

fn party(node: &str, nick: &str, group: &str) -> Party {
    Party {
        node: node.to_owned(),
        password: format!("pw-{node}"),
        nickname: nick.to_owned(),
        group: group.to_owned(),
    }
}

/// Waits (at most 10 s) until process `pid` uses under 5 % of a CPU over 300 ms: each phase starts
/// on an idle Prosody, not on one still busy with the previous phase (the c2s phase leaves
/// hundreds of sessions to close, each with presence to broadcast).
async fn settle(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let ticks = || -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Some(before) = ticks() else { return };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(after) = ticks() else { return };
        // 100 ticks a second: 5 % of 300 ms is 1.5 ticks.
        if after - before <= 1 {
            return;
        }
    }
    eprintln!("  (prosody still busy after 10 s; measuring anyway)");
}

/// The raw references' own component, beside the service's `register.example.test`: Prosody
/// accepts one connection per component, and the two are linked at the same time so that raw and
/// service binds can be measured in alternating rounds.
const RAW_COMPONENT: &str = "raw.example.test";

/// Rounds per bind mode: raw, service, raw, service, … each on its share of the pairs.
const ROUNDS: usize = 3;

/// `pairs` binds per mode; `conc` concurrent clients; `work` a scratch directory.
pub async fn run(bin: &Path, work: &Path, pairs: usize, conc: usize) -> XmppResults {
    let mut res = XmppResults::default();
    let limit = Duration::from_secs(40);

    // Reference: the Argon2id hash rate alone, at the service's default concurrency.
    let hasher = register::auth::passwords::Hasher::new(0);
    res.argon2 = run_jobs(400, conc, Duration::from_secs(5), |i| {
        let h = hasher.clone();
        async move { h.hash(format!("password-{i}")).await.is_ok() }
    })
    .await;
    eprintln!("  argon2id hash alone: {}", res.argon2.line());

    let prosody = tokio::task::spawn_blocking(|| {
        Prosody::start(ProsodyOptions {
            extra_components: vec![RAW_COMPONENT.to_owned()],
            ..ProsodyOptions::default()
        })
    })
    .await
    .expect("prosody");
    let raw_link = |binding| {
        let mut cfg = prosody.config(AccountsMode::Component, binding);
        cfg.component = RAW_COMPONENT.to_owned();
        let stop = CancellationToken::new();
        (Xmpp::start(cfg, stop.clone()), stop)
    };

    // Reference: Prosody's add-user rate through xmpp/ (component ad-hoc command).
    let (x, stop) = raw_link(BindingMode::C2s);
    assert!(link_up(&x).await, "component link to prosody");
    let n_raw = 4 * pairs;
    settle(prosody.pid()).await;
    res.prosody_add = run_jobs(n_raw, conc, limit, |i| {
        let x = x.clone();
        async move {
            let node = format!("raw{i:05}");
            x.create_account(&node, &format!("pw-{node}")).await.is_ok()
        }
    })
    .await;
    eprintln!("  prosody add-user (raw): {}", res.prosody_add.line());

    // The service, c2s binding.
    let dir = work.join("xmpp-service");
    let mut svc = Service::spawn(bin, &dir, XmppTarget::Prosody(&prosody, "c2s"), true);
    assert!(
        svc.wait_ready(Duration::from_secs(30)).await,
        "service link to prosody"
    );
    let tls = tls_client(&svc.cert_pem());
    let http = svc.http;

    // Register end to end: 2·pairs phones (captcha) and 2·pairs devices (param_sign), interleaved.
    let n_reg = 4 * pairs;
    let pool = Pool::new(http, tls.clone());
    settle(prosody.pid()).await;
    res.register = register_load(pool.clone(), n_reg, conc, limit, "").await;
    eprintln!("  register end to end: {}", res.register.line());

    // Log the phones in (captcha + param_sign) for their tokens.
    let tokens: Arc<Vec<std::sync::Mutex<String>>> =
        Arc::new((0..2 * pairs).map(|_| Default::default()).collect());
    res.login = run_jobs(2 * pairs, conc, limit, |k| {
        let (pool, tokens) = (pool.clone(), tokens.clone());
        async move {
            let Some(mut c) = pool.take().await else {
                return false;
            };
            let Ok(cap) = c.call("/verify_code", None, &[]).await else {
                return false;
            };
            let id = cap.captcha_id.unwrap_or_default();
            let body = signed_form(
                "/login",
                &[
                    ("user_name", &format!("ph-{k}")),
                    ("password", "password1"),
                    ("type", "1"),
                    ("verify_code", CAPTCHA),
                ],
            );
            let Ok(r) = c
                .call("/login", Some(body), &[("x-verify-code-id", &id)])
                .await
            else {
                return false;
            };
            pool.put(c);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            match v["access_token"].as_str() {
                Some(t) => {
                    *tokens[k].lock().unwrap() = t.to_owned();
                    true
                }
                None => false,
            }
        }
    })
    .await;
    eprintln!("  login (phones): {}", res.login.line());

    // Binds in c2s mode: raw pairs (4k, 4k+1) and the service's pairs 0..pairs, in turns.
    let turns = Turns {
        prosody_pid: prosody.pid(),
        pairs,
        conc,
        limit,
    };
    (res.raw_bind_c2s, res.bind_c2s) = turns.run(&x, 0, bind_job(pool, tokens.clone(), 0)).await;
    eprintln!(
        "  raw bind c2s ({ROUNDS} rounds): {}",
        res.raw_bind_c2s.line()
    );
    eprintln!(
        "  bind end to end, c2s ({ROUNDS} rounds between the raw ones): {}",
        res.bind_c2s.line()
    );
    stop.cancel();
    drop(x);
    svc.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Privileged mode: the service again on the same data, and a privileged raw link; raw pairs
    // (4k+2, 4k+3) and the service's pairs pairs..2·pairs, in turns.
    let svc = Service::spawn(bin, &dir, XmppTarget::Prosody(&prosody, "privileged"), true);
    assert!(
        svc.wait_ready(Duration::from_secs(30)).await,
        "service link to prosody"
    );
    let (x, stop) = raw_link(BindingMode::Privileged);
    assert!(link_up(&x).await, "component link to prosody");
    let pool = Pool::new(svc.http, tls);
    (res.raw_bind_priv, res.bind_priv) = turns.run(&x, 2, bind_job(pool, tokens, pairs)).await;
    eprintln!(
        "  raw bind privileged ({ROUNDS} rounds): {}",
        res.raw_bind_priv.line()
    );
    eprintln!(
        "  bind end to end, privileged ({ROUNDS} rounds between the raw ones): {}",
        res.bind_priv.line()
    );
    stop.cancel();
    drop(x);
    drop(svc);
    drop(prosody);
    res
}

/// Raw binds and service binds measured in turns ([`ROUNDS`] of each, on a share of the pairs).
struct Turns {
    prosody_pid: Option<u32>,
    pairs: usize,
    conc: usize,
    limit: Duration,
}

impl Turns {
    /// Returns (raw, service). Raw pair `k` is `raw{4k + raw_first}` with `raw{4k + raw_first + 1}`;
    /// the service binds through `service(k)` for `k` in `0..pairs`.
    async fn run<F, Fut>(&self, x: &Xmpp, raw_first: usize, service: F) -> (Rate, Rate)
    where
        F: Fn(usize) -> Fut + Clone,
        Fut: std::future::Future<Output = bool>,
    {
        let (mut raw, mut ours) = (Rate::default(), Rate::default());
        let chunk = self.pairs.div_ceil(ROUNDS);
        for r in 0..ROUNDS {
            let (from, n) = (r * chunk, chunk.min(self.pairs.saturating_sub(r * chunk)));
            settle(self.prosody_pid).await;
            raw.add(
                run_jobs(n, self.conc, self.limit, |i| {
                    let x = x.clone();
                    let k = from + i;
                    async move {
                        let a = party(&format!("raw{:05}", 4 * k + raw_first), "a", "Phone");
                        let b = party(&format!("raw{:05}", 4 * k + raw_first + 1), "b", "Device");
                        x.bind(&a, &b).await.is_ok()
                    }
                })
                .await,
            );
            settle(self.prosody_pid).await;
            let service = service.clone();
            ours.add(run_jobs(n, self.conc, self.limit, move |i| service(from + i)).await);
        }
        (raw, ours)
    }
}

/// A job binding phone `offset + i` to device `offset + i` through `/set_user_banding`.
fn bind_job(
    pool: Arc<Pool>,
    tokens: Arc<Vec<std::sync::Mutex<String>>>,
    offset: usize,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>> + Clone {
    move |i: usize| {
        let (pool, tokens) = (pool.clone(), tokens.clone());
        Box::pin(async move {
            let k = offset + i;
            let token = tokens[k].lock().unwrap().clone();
            if token.is_empty() {
                return false;
            }
            let Some(mut c) = pool.take().await else {
                return false;
            };
            let body = format!(
                "access_token={token}&user_name=ph-{k}&user_name_ls={}",
                enc(&format!("[\"dev-{k}\"]"))
            );
            let ok = c
                .call("/set_user_banding", Some(body), &[])
                .await
                .is_ok_and(|r| result_of(&r.body) == 0);
            pool.put(c);
            ok
        })
    }
}

/// `n` registrations end to end through `pool` with `conc` workers: phones (`{prefix}ph-k`,
/// captcha) and devices (`{prefix}dev-k`, `param_sign`) alternating.
async fn register_load(
    pool: Arc<Pool>,
    n: usize,
    conc: usize,
    limit: Duration,
    prefix: &'static str,
) -> Rate {
    run_jobs(n, conc, limit, |i| {
        let pool = pool.clone();
        async move {
            let Some(mut c) = pool.take().await else {
                return false;
            };
            let k = i / 2;
            let r = if i % 2 == 0 {
                let Ok(cap) = c.call("/verify_code", None, &[]).await else {
                    return false;
                };
                let id = cap.captcha_id.unwrap_or_default();
                let body = form(&[
                    ("user_name", &format!("{prefix}ph-{k}")),
                    ("password", "password1"),
                    ("type", "1"),
                    ("verify_code", CAPTCHA),
                ]);
                c.call("/register", Some(body), &[("x-verify-code-id", &id)])
                    .await
            } else {
                let body = signed_form(
                    "/register",
                    &[
                        ("user_name", &format!("{prefix}dev-{k}")),
                        ("password", "password1"),
                        ("type", "2"),
                        ("des", "a device"),
                        ("device_type", "cam"),
                    ],
                );
                c.call("/register", Some(body), &[]).await
            };
            let ok = r.is_ok_and(|r| result_of(&r.body) == 0);
            pool.put(c);
            ok
        }
    })
    .await
}

/// Register end to end on one Prosody, first with the service on SQLite (a fresh `data_dir`),
/// then on PostgreSQL at `pg_url` (seeded beforehand), `n` registrations each with `conc`
/// workers. Returns (SQLite, PostgreSQL).
pub async fn register_sqlite_pg(
    bin: &Path,
    work: &Path,
    pg_url: &str,
    n: usize,
    conc: usize,
) -> (Rate, Rate) {
    let limit = Duration::from_secs(40);
    let prosody = tokio::task::spawn_blocking(|| Prosody::start(ProsodyOptions::default()))
        .await
        .expect("prosody");
    let mut out = [Rate::default(); 2];
    let runs = [(None, "sq-", "sqw-"), (Some(pg_url), "pg-", "pgw-")];
    for (slot, (db, prefix, warm)) in runs.into_iter().enumerate() {
        let dir = work.join(format!("register-{prefix}service"));
        let mut svc = Service::spawn_db(bin, &dir, XmppTarget::Prosody(&prosody, "c2s"), true, db);
        assert!(
            svc.wait_ready(Duration::from_secs(30)).await,
            "service link to prosody"
        );
        let pool = Pool::new(svc.http, tls_client(&svc.cert_pem()));
        // Warm up: open the connections, first captchas and hashes.
        let _ = register_load(pool.clone(), 2 * conc, conc, limit, warm).await;
        out[slot] = register_load(pool, n, conc, limit, prefix).await;
        eprintln!(
            "  register end to end, {}: {}",
            if db.is_some() { "PostgreSQL" } else { "SQLite" },
            out[slot].line()
        );
        svc.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(prosody);
    (out[0], out[1])
}
