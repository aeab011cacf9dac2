//! `register-bench`: every benchmark of issue 7, each beside its reference, in one run.
//!
//! ```sh
//! scripts/bench.sh                      # build, install what is missing, run everything
//! target/release/register-bench all     # the same without the setup
//! target/release/register-bench all --only tcp,captcha
//! ```
//!
//! The service runs as the real release binary (`target/release/register`, a child process with
//! a generated configuration), so its runtime, logging and memory are what production has. Load
//! generators run on one core each (a current-thread runtime), as `redis-benchmark` does.
//! Everything listens on 127.0.0.1 only; every load is bounded in time and in count.

mod https;
mod legacy;
mod tcp;
mod util;
mod xmppb;

/// The same allocator as the service's (`src/main.rs`), so that the reference servers this binary
/// runs are the same stack.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::{enc, free_port, ms, result_of, signed_form, tls_client, Service, Stats, XmppTarget};

struct Opts {
    bin: PathBuf,
    only: Vec<String>,
    users: usize,
    conns: usize,
    secs: f64,
    idle_conns: usize,
    pairs: usize,
    /// PostgreSQL for the `pg` section (`scripts/pg-test.sh` starts a throwaway one).
    pg_url: Option<String>,
}

/// One line of the summary.
struct Row {
    name: String,
    ours: String,
    reference: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

fn row(name: &str, ours: String, reference: String, ratio: Option<f64>, target: &str) -> Row {
    let met = match target.split_whitespace().collect::<Vec<_>>().as_slice() {
        [">=", t] => ratio.zip(t.parse::<f64>().ok()).map(|(r, t)| r >= t),
        ["<=", t] => ratio.zip(t.parse::<f64>().ok()).map(|(r, t)| r <= t),
        _ => None,
    };
    Row {
        name: name.into(),
        ours,
        reference,
        ratio,
        target: target.into(),
        met,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-constant") {
        https::serve_constant(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("serve-constant-tcp") {
        tcp::serve_constant_tcp(&args[1..]);
        return;
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Opts {
        bin: exe_dir.join("register"),
        only: Vec::new(),
        users: 100_000,
        conns: 50,
        secs: 6.0,
        idle_conns: 10_000,
        pairs: 384,
        pg_url: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "all" => {}
            "--bin" => o.bin = v().into(),
            "--only" => o.only = v().split(',').map(str::to_owned).collect(),
            "--users" => o.users = v().parse().expect("--users N"),
            "--conns" => o.conns = v().parse().expect("--conns N"),
            "--secs" => o.secs = v().parse().expect("--secs S"),
            "--idle-conns" => o.idle_conns = v().parse().expect("--idle-conns N"),
            "--pairs" => o.pairs = v().parse().expect("--pairs N"),
            "--pg-url" => o.pg_url = Some(v()).filter(|u| !u.is_empty()),
            other => {
                eprintln!(
                    "usage: register-bench [all] [--bin PATH] [--only tcp,https,xmpp,captcha,memory,isolation,pg] \
                     [--users N] [--conns N] [--secs S] [--idle-conns N] [--pairs N] [--pg-url URL]\n\
                     unknown argument {other}"
                );
                std::process::exit(2);
            }
        }
    }
    assert!(
        o.bin.exists(),
        "{} not found: build it with cargo build --release -p register",
        o.bin.display()
    );
    let want = |n: &str| {
        (o.only.is_empty() || o.only.iter().any(|x| x == n)) && (n != "pg" || o.pg_url.is_some())
    };
    if o.only.iter().any(|x| x == "pg") && o.pg_url.is_none() {
        eprintln!("--only pg without --pg-url: the PostgreSQL section is skipped");
    }
    let started = Instant::now();
    machine();
    let work = tempfile::Builder::new()
        .prefix("register-bench-")
        .tempdir()
        .expect("tempdir");
    let mut rows: Vec<Row> = Vec::new();

    // The seeded service serves the TCP, HTTPS, captcha-over-HTTPS benchmarks.
    let seeded_dir = work.path().join("seeded");
    let seeded =
        if want("tcp") || want("https") || want("memory") || want("isolation") || want("pg") {
            let t = Instant::now();
            let s = util::seed(&seeded_dir, o.users);
            eprintln!(
                "seeded {} users with a token each in {:.1} s",
                s.len(),
                t.elapsed().as_secs_f64()
            );
            s
        } else {
            Vec::new()
        };
    let tokens: Arc<Vec<String>> = Arc::new(seeded.iter().map(|s| s.token.clone()).collect());

    if want("tcp") || want("https") {
        let svc = Service::spawn(&o.bin, &seeded_dir, XmppTarget::None, false);
        std::thread::sleep(Duration::from_millis(500));
        let rss_idle = svc.rss_kib();
        if want("tcp") {
            bench_tcp(&o, &svc, tokens.clone(), &mut rows);
        }
        if want("https") {
            bench_https(&o, &svc, &seeded, work.path(), &mut rows);
        }
        eprintln!(
            "RSS of that service: {} MiB fresh, {} MiB after the loads",
            rss_idle / 1024,
            svc.rss_kib() / 1024
        );
    }
    if want("captcha") {
        bench_captcha(&o, work.path(), &mut rows);
    }
    if want("memory") {
        bench_memory(&o, &seeded_dir, tokens.clone(), &mut rows);
    }
    if want("isolation") {
        bench_isolation(&o, &seeded_dir, tokens.clone(), &mut rows);
    }
    if want("xmpp") {
        bench_xmpp(&o, work.path(), &mut rows);
    }
    if want("pg") {
        bench_pg(&o, &seeded_dir, &seeded, work.path(), &mut rows);
    }

    println!();
    println!(
        "## Summary ({:.0} s, commit {})",
        started.elapsed().as_secs_f64(),
        git_commit()
    );
    println!();
    println!("| benchmark | ours | reference | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            r.ours,
            r.reference,
            r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} CPUs ({cpu}), {}, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn git_commit() -> String {
    Command::new("git")
        .args(["log", "-1", "--format=%h"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn fmt_rate(s: &Stats) -> String {
    format!("{:.0}/s, p50 {}, p99 {}", s.rate, ms(s.p50), ms(s.p99))
}

/// 1. TCP `/verify_access_token` vs `redis-benchmark -t get`, without and with pipelining.
fn bench_tcp(o: &Opts, svc: &Service, tokens: Arc<Vec<String>>, rows: &mut Vec<Row>) {
    eprintln!("== 1. TCP /verify_access_token ({} connections)", o.conns);
    let rt = util::client_rt();
    // Warm up: every token checked once (the service keeps a token in memory from its first
    // check on, as redis-server holds its keys from the start), then 1 s of the load itself.
    let t = Instant::now();
    let valid = rt.block_on(tcp::touch_all(svc.tcp, tokens.clone()));
    eprintln!(
        "  warm-up: {valid} of {} tokens checked once in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    rt.block_on(tcp::verify_load(
        svc.tcp,
        tokens.clone(),
        o.conns,
        1,
        1.0,
        false,
    ));
    // Each load with the CPU time its server used meanwhile (`Cpu`): what a request costs the
    // server, whatever share of the two cores the load generator left it.
    let load = |addr: std::net::SocketAddr, pid: u32, depth: usize, resp: bool| {
        let before = util::cpu_ticks(pid);
        let s = rt.block_on(tcp::verify_load(
            addr,
            tokens.clone(),
            o.conns,
            depth,
            o.secs,
            resp,
        ));
        let ticks = util::cpu_ticks(pid).saturating_sub(before);
        (s, ticks)
    };
    let (plain, plain_cpu) = load(svc.tcp, svc.pid(), 1, false);
    eprintln!("  ours, one in flight per connection: {}", plain.line());
    let (piped, piped_cpu) = load(svc.tcp, svc.pid(), 16, false);
    eprintln!("  ours, pipelined 16 per connection: {}", piped.line());
    // The transport's own ceiling: tcp_api answering one of our replies as a constant.
    let body = rt.block_on(tcp::one_reply(svc.tcp, &tokens[0]));
    let body_file = svc.data_dir.join("constant-line.json");
    std::fs::write(&body_file, body.trim()).unwrap();
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("serve-constant-tcp")
        .arg(port.to_string())
        .arg(&body_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("reference server");
    let addr = ([127, 0, 0, 1], port).into();
    let (cp, cpp) = if util::wait_accepting(addr, Duration::from_secs(10)) {
        let (cp, cp_cpu) = load(addr, child.id(), 1, false);
        let (cpp, cpp_cpu) = load(addr, child.id(), 16, false);
        eprintln!(
            "  tcp_api constant reply, CPU per 1,000 requests (clock ticks): {:.2}, pipelined 16 {:.2}",
            1000.0 * cp_cpu as f64 / cp.count.max(1) as f64,
            1000.0 * cpp_cpu as f64 / cpp.count.max(1) as f64
        );
        eprintln!("  tcp_api constant reply: {}", cp.line());
        eprintln!("  tcp_api constant reply, pipelined 16: {}", cpp.line());
        (Some(cp), Some(cpp))
    } else {
        (None, None)
    };
    let _ = child.kill();
    let _ = child.wait();
    let (rp, rpp) = match tcp::Redis::start() {
        Some(redis) => {
            let c = o.conns.to_string();
            // Values of the size of our reply, on a key space as large as our user set.
            let keys = o.users.to_string();
            let _ = redis.benchmark(&[
                "-t", "set", "-n", "300000", "-r", &keys, "-d", "180", "-c", &c, "-P", "16",
            ]);
            let rp = redis.benchmark(&[
                "-t", "get", "-n", "400000", "-r", &keys, "-d", "180", "-c", &c,
            ]);
            let rpp = redis.benchmark(&[
                "-t", "get", "-n", "3000000", "-r", &keys, "-d", "180", "-c", &c, "-P", "16",
            ]);
            // The same redis driven by our load generator (whose own cost is in every figure).
            let raddr = ([127, 0, 0, 1], redis.port).into();
            let (ours_r, r_cpu) = load(raddr, redis.pid(), 1, true);
            let (ours_rp, rp_cpu) = load(raddr, redis.pid(), 16, true);
            eprintln!("  redis GET, our load generator: {}", ours_r.line());
            eprintln!(
                "  redis GET, our load generator, pipelined 16: {}",
                ours_rp.line()
            );
            // CPU per request, in clock ticks per 1,000 requests: Redis's over ours is how much of
            // Redis's cost per request ours is, i.e. the throughput ratio on a machine where
            // the server has a core to itself.
            let per_k = |ticks: u64, s: &Stats| 1000.0 * ticks as f64 / s.count.max(1) as f64;
            for (what, ours, ours_cpu, redis, redis_cpu) in [
                ("", &plain, plain_cpu, &ours_r, r_cpu),
                (", pipelined 16", &piped, piped_cpu, &ours_rp, rp_cpu),
            ] {
                let (o_k, r_k) = (per_k(ours_cpu, ours), per_k(redis_cpu, redis));
                eprintln!(
                    "  CPU per 1,000 requests{what} (clock ticks): ours {o_k:.2} ({ours_cpu} ticks), redis {r_k:.2} ({redis_cpu} ticks)"
                );
                rows.push(row(
                    &format!("(1. server CPU per request{what}, Redis over ours)"),
                    format!("{o_k:.2} ticks per 1,000"),
                    format!("redis GET, our load generator, {r_k:.2} ticks per 1,000"),
                    (o_k > 0.0).then(|| r_k / o_k),
                    "—",
                ));
            }
            for (name, ours, redis) in [
                (
                    "(1. same, both driven by our load generator)",
                    &plain,
                    &ours_r,
                ),
                (
                    "(1. same, pipelined 16, our load generator)",
                    &piped,
                    &ours_rp,
                ),
            ] {
                rows.push(row(
                    name,
                    format!("{:.0}/s", ours.rate),
                    format!("redis GET {}", fmt_rate(redis)),
                    Some(ours.rate / redis.rate),
                    "—",
                ));
            }
            (rp, rpp)
        }
        None => {
            eprintln!("  redis-server not found: no reference");
            (None, None)
        }
    };
    if let Some(r) = &rp {
        eprintln!("  redis GET: {}", r.line());
    }
    if let Some(r) = &rpp {
        eprintln!("  redis GET -P 16: {}", r.line());
    }
    rows.push(row(
        &format!("1. TCP verify_access_token, {} conns", o.conns),
        fmt_rate(&plain),
        rp.map_or("—".into(), |r| format!("redis GET {}", fmt_rate(&r))),
        rp.map(|r| plain.rate / r.rate),
        ">= 1.0",
    ));
    for (what, ours, c) in [("", plain, cp), (", pipelined 16", piped, cpp)] {
        if let Some(c) = c {
            rows.push(row(
                &format!("(1. same vs tcp_api constant reply{what})"),
                format!("{:.0}/s", ours.rate),
                format!("constant reply {}", fmt_rate(&c)),
                Some(ours.rate / c.rate),
                "—",
            ));
        }
    }
    rows.push(row(
        "1. TCP verify_access_token, pipelined 16",
        fmt_rate(&piped),
        rpp.map_or("—".into(), |r| {
            format!("redis GET -P 16 {}", fmt_rate(&r))
        }),
        rpp.map(|r| piped.rate / r.rate),
        ">= 1.0",
    ));
}

/// 2. HTTPS `/get_users` vs the same hyper + rustls stack answering a constant body.
fn bench_https(o: &Opts, svc: &Service, seeded: &[util::Seeded], work: &Path, rows: &mut Vec<Row>) {
    let conns = 32;
    eprintln!("== 2. HTTPS /get_users keep-alive ({conns} connections)");
    let tls = tls_client(&svc.cert_pem());
    let phones: Rc<Vec<(String, String, String)>> = Rc::new(
        seeded
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| {
                let names = format!("[\"{}\",\"{}\"]", c[0].name, c[1].name);
                (c[0].token.clone(), enc(&names), c[0].name.clone())
            })
            .collect(),
    );
    let make: https::MakeReq = {
        let phones = phones.clone();
        Rc::new(move |i| {
            let (t, names, _) = &phones[(i * 7919) % phones.len()];
            (
                format!("/get_users?access_token={t}&user_name_ls={names}"),
                None,
                vec![],
            )
        })
    };
    let ok_json: https::Check = Rc::new(|r| r.status == 200 && result_of(&r.body) == 0);
    let rt = util::client_rt();
    // One real reply: the reference answers with exactly these bytes.
    let sample = rt.block_on(async {
        let mut c = util::Https::connect(svc.http, tls.clone())
            .await
            .expect("connect");
        let (pq, _, _) = make(1);
        c.call(&pq, None, &[]).await.expect("get_users")
    });
    assert_eq!(result_of(&sample.body), 0, "get_users works");
    // Warm-up: each of the distinct requests once, over HTTPS itself (the TCP API would skip the
    // pair rows an HTTPS caller reads, so their cache would still fill during the rounds), then
    // 1 s of the load itself.
    let t = Instant::now();
    let n = phones.len();
    let warm = rt.block_on(https::load_limited(
        svc.http,
        tls.clone(),
        conns,
        60.0,
        n,
        make.clone(),
        ok_json.clone(),
    ));
    let ok = warm.lat.len().saturating_sub(warm.errors);
    eprintln!(
        "  warm-up: {ok} of {n} get_users answered once in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The references, in processes of their own like the service, started now: all are measured
    // in alternating rounds (ours, references, ours, …), so that a change in the machine's load
    // hits them alike. Two references: the stack with the service's own logging (its request
    // span costs what it costs the service) and the stack with no log subscriber at all.
    let body_file = work.join("constant.json");
    std::fs::write(&body_file, &sample.body).unwrap();
    let dir = work.join("constant");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, svc.cert_pem()).unwrap();
    std::fs::write(&key, svc.key_pem()).unwrap();
    let spawn_ref = |log: bool| {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg("serve-constant")
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&body_file);
        if log {
            cmd.arg("--log");
        }
        let log_file = std::fs::File::create(dir.join(format!("log-{log}.txt"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("reference server");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let up = util::wait_accepting(addr, Duration::from_secs(10));
        (child, up.then_some(addr))
    };
    let (mut child_log, ref_log) = spawn_ref(true);
    let (mut child_bare, ref_bare) = spawn_ref(false);
    let load = |to: std::net::SocketAddr, secs: f64| {
        rt.block_on(https::load_samples(
            to,
            tls.clone(),
            conns,
            secs,
            make.clone(),
            ok_json.clone(),
        ))
    };
    for to in [Some(svc.http), ref_log, ref_bare].into_iter().flatten() {
        load(to, 1.0);
    }
    const ROUNDS: usize = 3;
    let mut ours = https::Samples::default();
    let (mut with_log, mut bare) = (https::Samples::default(), https::Samples::default());
    // The CPU time each server used in its rounds: what a request costs it, whatever share of
    // the machine the load generator left it (the throughputs move with that share).
    let (mut ours_cpu, mut log_cpu) = (0u64, 0u64);
    let timed = |to: std::net::SocketAddr, pid: u32, secs: f64, cpu: &mut u64| {
        let before = util::cpu_ticks(pid);
        let s = load(to, secs);
        *cpu += util::cpu_ticks(pid).saturating_sub(before);
        s
    };
    for _ in 0..ROUNDS {
        let secs = o.secs / ROUNDS as f64;
        ours.add(timed(svc.http, svc.pid(), secs, &mut ours_cpu));
        if let Some(a) = ref_log {
            with_log.add(timed(a, child_log.id(), secs, &mut log_cpu));
        }
        if let Some(a) = ref_bare {
            bare.add(load(a, secs));
        }
    }
    let (ours_n, log_n) = (ours.lat.len(), with_log.lat.len());
    let ours = ours.stats();
    eprintln!(
        "  ours ({ROUNDS} rounds): {} ({} byte replies)",
        ours.line(),
        sample.body.len()
    );
    let reference = ref_log.map(|_| with_log.stats());
    let reference_bare = ref_bare.map(|_| bare.stats());
    if let Some(r) = &reference {
        eprintln!(
            "  reference (constant reply, same stack, the service's logging; rounds between ours): {}",
            r.line()
        );
    }
    if let Some(r) = &reference_bare {
        eprintln!(
            "  reference (constant reply, same stack, no log subscriber; rounds between ours): {}",
            r.line()
        );
    }
    for c in [&mut child_log, &mut child_bare] {
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Some(r) = &reference_bare {
        rows.push(row(
            &format!("(2. same vs the stack with no log subscriber, {conns} conns)"),
            fmt_rate(&ours),
            format!("constant reply {}", fmt_rate(r)),
            Some(ours.rate / r.rate),
            "—",
        ));
    }
    // CPU per request, in clock ticks per 1,000 requests: the reference's over ours is how much
    // of a request's cost is the stack's, the throughput ratio without the generator's share.
    let per_k = |ticks: u64, n: usize| 1000.0 * ticks as f64 / n.max(1) as f64;
    if ref_log.is_some() && ours_cpu > 0 && log_cpu > 0 {
        let (o_k, r_k) = (per_k(ours_cpu, ours_n), per_k(log_cpu, log_n));
        eprintln!(
            "  CPU per 1,000 requests (clock ticks): ours {o_k:.1} ({ours_cpu} ticks), reference with logging {r_k:.1} ({log_cpu} ticks)"
        );
        rows.push(row(
            &format!("(2. server CPU per request, reference over ours, {conns} conns)"),
            format!("{o_k:.1} ticks per 1,000"),
            format!("constant reply, the service's logging, {r_k:.1} ticks per 1,000"),
            Some(r_k / o_k),
            "—",
        ));
    }
    rows.push(row(
        &format!("2. HTTPS get_users keep-alive, {conns} conns"),
        fmt_rate(&ours),
        reference.map_or("—".into(), |r| {
            format!("constant reply, the service's logging, {}", fmt_rate(&r))
        }),
        reference.map(|r| ours.rate / r.rate),
        // Issue 21 (was 0.6).
        ">= 0.8",
    ));
}

/// 5. Captcha images/s: `captcha::generate` on every core, and `/verify_code` over HTTPS.
fn bench_captcha(o: &Opts, work: &Path, rows: &mut Vec<Row>) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!("== 5. Captcha");
    let gen = |threads: usize, secs: f64, legacy: bool| -> (f64, usize) {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let (n, bytes): (usize, usize) = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let (mut n, mut bytes) = (0usize, 0usize);
                        while Instant::now() < deadline && n < 1_000_000 {
                            let (a, png) = if legacy {
                                legacy::generate(5)
                            } else {
                                register::auth::captcha::generate(5, None)
                            }
                            .expect("captcha");
                            assert!(a.len() == 5 && png.starts_with(b"\x89PNG"));
                            n += 1;
                            bytes += png.len();
                        }
                        (n, bytes)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        (n as f64 / start.elapsed().as_secs_f64(), bytes / n.max(1))
    };
    let (one, size) = gen(1, 3.0, false);
    let (all, _) = gen(cores, 4.0, false);
    eprintln!("  generate: {one:.0}/s on 1 thread, {all:.0}/s on {cores} threads, {size} bytes");
    let (old_one, old_size) = gen(1, 3.0, true);
    let (old_all, _) = gen(cores, 4.0, true);
    eprintln!(
        "  the crate's pipeline (before): {old_one:.0}/s on 1 thread, {old_all:.0}/s on {cores} threads, {old_size} bytes"
    );
    let dir = work.join("captcha-service");
    let svc = Service::spawn(&o.bin, &dir, XmppTarget::None, false);
    let tls = tls_client(&svc.cert_pem());
    let make: https::MakeReq = Rc::new(|_| ("/verify_code".into(), None, vec![]));
    let png: https::Check =
        Rc::new(|r| r.status == 200 && r.body.starts_with(b"\x89PNG") && r.captcha_id.is_some());
    let rt = util::client_rt();
    rt.block_on(https::load_samples(
        svc.http,
        tls.clone(),
        8,
        1.0,
        make.clone(),
        png.clone(),
    ));
    let http = rt
        .block_on(https::load_samples(svc.http, tls, 8, o.secs, make, png))
        .stats();
    eprintln!("  /verify_code over HTTPS (8 connections): {}", http.line());
    rows.push(row(
        &format!("5. captcha::generate, {cores} threads"),
        format!("{all:.0}/s (1 thread {one:.0}/s), {size} B"),
        format!("1000/s; before: {old_all:.0}/s, {old_size} B"),
        Some(all / 1000.0),
        ">= 1.0",
    ));
    rows.push(row(
        "5. HTTPS /verify_code, 8 conns",
        fmt_rate(&http),
        "1000/s".into(),
        Some(http.rate / 1000.0),
        ">= 1.0",
    ));
}

/// 6. RSS of the real binary idle and with `idle_conns` idle TCP connections.
fn bench_memory(o: &Opts, dir: &Path, tokens: Arc<Vec<String>>, rows: &mut Vec<Row>) {
    eprintln!("== 6. Memory");
    let limit = util::nofile_limit() as usize;
    let n = o.idle_conns.min(limit.saturating_sub(200));
    if n < o.idle_conns {
        eprintln!("  open-file limit {limit}: only {n} connections (raise it with ulimit -n)");
    }
    let svc = Service::spawn(&o.bin, dir, XmppTarget::None, false);
    std::thread::sleep(Duration::from_secs(2));
    let idle = svc.rss_kib();
    eprintln!("  idle: {} KiB", idle);
    let rt = util::client_rt();
    let addr = svc.tcp;
    let (conns, ok) = rt.block_on(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let mut conns = Vec::with_capacity(n);
        let deadline = Instant::now() + Duration::from_secs(60);
        while conns.len() < n && Instant::now() < deadline {
            let batch = (n - conns.len()).min(500);
            let got =
                futures::future::join_all((0..batch).map(|_| tokio::net::TcpStream::connect(addr)))
                    .await;
            conns.extend(got.into_iter().filter_map(Result::ok).map(BufReader::new));
        }
        // One token check on each, so every connection has been accepted and served.
        let mut ok = 0usize;
        for chunk in conns.chunks_mut(500) {
            let r = futures::future::join_all(chunk.iter_mut().enumerate().map(|(i, c)| {
                let t = tokens[i % tokens.len()].clone();
                async move {
                    let req = format!("/verify_access_token {{\"access_token\":\"{t}\"}}\n");
                    c.get_mut().write_all(req.as_bytes()).await.ok()?;
                    let mut line = String::new();
                    tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut line))
                        .await
                        .ok()?
                        .ok()?;
                    line.contains("\"validate\":true").then_some(())
                }
            }))
            .await;
            ok += r.iter().filter(|x| x.is_some()).count();
        }
        (conns, ok)
    });
    std::thread::sleep(Duration::from_secs(2));
    let loaded = svc.rss_kib();
    eprintln!(
        "  {} idle connections ({} served a token check): {} KiB",
        conns.len(),
        ok,
        loaded
    );
    drop(conns);
    drop(rt);
    rows.push(row(
        &format!("6. RSS, {} idle TCP conns", ok),
        format!(
            "{:.1} MiB (idle {:.1} MiB)",
            loaded as f64 / 1024.0,
            idle as f64 / 1024.0
        ),
        "64 MiB".into(),
        Some(loaded as f64 / 1024.0 / 64.0),
        "<= 1.0",
    ));
}

/// 7. p99 of paced TCP token checks alone and during a login flood.
fn bench_isolation(o: &Opts, dir: &Path, tokens: Arc<Vec<String>>, rows: &mut Vec<Row>) {
    let (conns, every, flood_conns) = (10, Duration::from_millis(5), 64);
    eprintln!(
        "== 7. Isolation: {conns} connections × one check per {} ms, alone and during a login flood ({flood_conns} connections)",
        every.as_millis()
    );
    let svc = Service::spawn(&o.bin, dir, XmppTarget::None, false);
    let addr = svc.tcp;
    let rt = util::client_rt();
    rt.block_on(tcp::paced_probe(addr, tokens.clone(), conns, every, 1.0));
    let tls = tls_client(&svc.cert_pem());
    let http = svc.http;
    // Rounds of the probe alone, then during a flood, so that a change in the machine's load
    // falls on both. Each flood starts 1 s before its probe (to saturate hashing) and ends 1 s
    // after it.
    const ROUNDS: usize = 3;
    let secs = o.secs / ROUNDS as f64;
    let (mut alone, mut during) = (https::Samples::default(), https::Samples::default());
    let mut flood_total = xmppb::Rate::default();
    for _ in 0..ROUNDS {
        alone.add(rt.block_on(tcp::paced_probe_samples(
            addr,
            tokens.clone(),
            conns,
            every,
            secs,
        )));
        let tls = tls.clone();
        let flood = std::thread::spawn(move || {
            let rt = util::client_rt();
            let make: https::MakeReq = Rc::new(|i| {
                let body = signed_form(
                    "/login",
                    &[
                        ("user_name", &format!("nobody-{i}")),
                        ("password", "wrong-password"),
                        ("type", "2"),
                    ],
                );
                ("/login".into(), Some(body), vec![])
            });
            let refused: https::Check = Rc::new(|r| r.status == 200 && result_of(&r.body) == 102);
            rt.block_on(https::load_samples(
                http,
                tls,
                flood_conns,
                secs + 2.0,
                make,
                refused,
            ))
            .stats()
        });
        std::thread::sleep(Duration::from_secs(1));
        during.add(rt.block_on(tcp::paced_probe_samples(
            addr,
            tokens.clone(),
            conns,
            every,
            secs,
        )));
        let f = flood.join().expect("flood");
        flood_total.add(xmppb::Rate {
            ok: f.count,
            failed: f.errors,
            secs: secs + 2.0,
        });
    }
    let (alone, during) = (alone.stats(), during.stats());
    eprintln!("  alone ({ROUNDS} rounds): {}", alone.line());
    eprintln!(
        "  during the flood ({ROUNDS} rounds between those alone): {}",
        during.line()
    );
    eprintln!("  the flood: logins answered {}", flood_total.line());
    let ratio = during.p99.as_secs_f64() / alone.p99.as_secs_f64().max(1e-9);
    rows.push(row(
        "7. TCP p99 during login flood / alone",
        format!(
            "p99 {} (p50 {}), flood {:.0} logins/s",
            ms(during.p99),
            ms(during.p50),
            flood_total.per_sec()
        ),
        format!("alone p99 {} (p50 {})", ms(alone.p99), ms(alone.p50)),
        Some(ratio),
        "<= 2.0",
    ));
}

/// 3 and 4. Register and bind end to end on Prosody, beside the raw operations.
fn bench_xmpp(o: &Opts, work: &Path, rows: &mut Vec<Row>) {
    eprintln!(
        "== 3/4. Register and bind on Prosody ({} pairs per mode, 8 concurrent)",
        o.pairs
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let r = rt.block_on(xmppb::run(&o.bin, work, o.pairs, 8));
    let smaller = r.argon2.per_sec().min(r.prosody_add.per_sec());
    rows.push(row(
        "3. register end to end (8 concurrent)",
        format!("{:.1}/s", r.register.per_sec()),
        format!(
            "min(argon2id {:.1}/s, prosody add-user {:.1}/s)",
            r.argon2.per_sec(),
            r.prosody_add.per_sec()
        ),
        Some(r.register.per_sec() / smaller.max(1e-9)),
        ">= 0.9",
    ));
    for (mode, ours, raw) in [
        ("c2s", &r.bind_c2s, &r.raw_bind_c2s),
        ("privileged", &r.bind_priv, &r.raw_bind_priv),
    ] {
        rows.push(row(
            &format!("4. bind end to end, {mode}"),
            format!("{:.1}/s", ours.per_sec()),
            format!("raw Xmpp::bind {:.1}/s", raw.per_sec()),
            Some(ours.per_sec() / raw.per_sec().max(1e-9)),
            ">= 0.8",
        ));
    }
    rows.push(row(
        "(login, phones, captcha + param_sign)",
        format!("{:.1}/s", r.login.per_sec()),
        "—".into(),
        None,
        "—",
    ));
    let failures = r.register.failed
        + r.login.failed
        + r.bind_c2s.failed
        + r.bind_priv.failed
        + r.raw_bind_c2s.failed
        + r.raw_bind_priv.failed
        + r.prosody_add.failed;
    if failures > 0 {
        eprintln!("  WARNING: {failures} operations failed (see above)");
    }
}

/// 1 and 3 on PostgreSQL beside SQLite: TCP token checks (plain and pipelined 16) on the same
/// 100k accounts and tokens in both databases, both services up at once and measured in
/// alternating rounds (SQLite, PostgreSQL, SQLite, …) so that a change in the machine's load falls
/// on both; then registrations end to end on one Prosody. Ratios are PostgreSQL / SQLite.
fn bench_pg(
    o: &Opts,
    sqlite_dir: &Path,
    seeded: &[util::Seeded],
    work: &Path,
    rows: &mut Vec<Row>,
) {
    let url = o.pg_url.as_deref().expect("--pg-url");
    eprintln!("== P. PostgreSQL beside SQLite ({url})");
    let t = Instant::now();
    util::seed_pg(url, seeded);
    eprintln!(
        "  seeded PostgreSQL with the same {} users and tokens in {:.1} s",
        seeded.len(),
        t.elapsed().as_secs_f64()
    );
    let tokens: Arc<Vec<String>> = Arc::new(seeded.iter().map(|s| s.token.clone()).collect());
    let rt = util::client_rt();
    let svcs: Vec<(&str, Service)> = [
        ("SQLite", None, sqlite_dir.to_owned()),
        ("PostgreSQL", Some(url), work.join("pg-service")),
    ]
    .into_iter()
    .map(|(what, db, dir)| {
        let svc = Service::spawn_db(&o.bin, &dir, XmppTarget::None, false, db);
        (what, svc)
    })
    .collect();
    std::thread::sleep(Duration::from_millis(500));
    let load = |svc: &Service, depth: usize, secs: f64| {
        rt.block_on(tcp::verify_load(
            svc.tcp,
            tokens.clone(),
            o.conns,
            depth,
            secs,
            false,
        ))
    };
    for (_, svc) in &svcs {
        // The same warm-up as benchmark 1: every token once, then 1 s of load.
        rt.block_on(tcp::touch_all(svc.tcp, tokens.clone()));
        load(svc, 1, 1.0);
    }
    const ROUNDS: usize = 3;
    let mut tcp = Vec::new();
    for depth in [1, 16] {
        let mut rounds: Vec<Vec<util::Stats>> = vec![Vec::new(); svcs.len()];
        for _ in 0..ROUNDS {
            for (i, (_, svc)) in svcs.iter().enumerate() {
                rounds[i].push(load(svc, depth, o.secs / ROUNDS as f64));
            }
        }
        let merged: Vec<util::Stats> = rounds.iter().map(|r| util::Stats::merge(r)).collect();
        for ((what, _), m) in svcs.iter().zip(&merged) {
            eprintln!(
                "  TCP verify, {what}, depth {depth} ({ROUNDS} alternating rounds): {}",
                m.line()
            );
        }
        tcp.push((merged[0], merged[1]));
    }
    drop(svcs);
    let ((sp, pp), (spp, ppp)) = (tcp[0], tcp[1]);
    for (name, pg, sq) in [
        (
            format!("P1. TCP verify_access_token, {} conns, PostgreSQL", o.conns),
            pp,
            sp,
        ),
        (
            "P1. TCP verify_access_token, pipelined 16, PostgreSQL".to_owned(),
            ppp,
            spp,
        ),
    ] {
        rows.push(row(
            &name,
            fmt_rate(&pg),
            format!("SQLite {}", fmt_rate(&sq)),
            Some(pg.rate / sq.rate.max(1e-9)),
            // Issue 21: each instance answers from its own memory on PostgreSQL too.
            ">= 0.8",
        ));
    }
    let n = 4 * o.pairs;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (sq, pg) = rt.block_on(xmppb::register_sqlite_pg(&o.bin, work, url, n, 8));
    rows.push(row(
        "P3. register end to end (8 concurrent), PostgreSQL",
        format!("{:.1}/s", pg.per_sec()),
        format!("SQLite {:.1}/s", sq.per_sec()),
        Some(pg.per_sec() / sq.per_sec().max(1e-9)),
        "—",
    ));
    if sq.failed + pg.failed > 0 {
        eprintln!("  WARNING: {} registrations failed", sq.failed + pg.failed);
    }
}
