//! `/metrics` after a scripted session, parsed with a Prometheus text-format parser: the
//! histograms have cumulative buckets and the series an operator alerts on are there.

use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::harness::{signed, tcp_verify, Env, Opts};

fn find<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn scalar(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

/// The buckets of a histogram series: present, cumulative, ending in `+Inf` = `_count`.
fn check_histogram(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(Value::Histogram(buckets)) = find(s, name, labels).map(|x| &x.value) else {
        panic!("no histogram {name} {labels:?}");
    };
    assert!(buckets.len() > 5, "{name}: {buckets:?}");
    for w in buckets.windows(2) {
        assert!(
            w[0].less_than < w[1].less_than,
            "{name}: bounds {buckets:?}"
        );
        assert!(
            w[0].count <= w[1].count,
            "{name}: not cumulative {buckets:?}"
        );
    }
    let last = buckets.last().unwrap();
    assert!(last.less_than.is_infinite(), "{name}: no +Inf bucket");
    let count = scalar(s, &format!("{name}_count"), labels);
    assert_eq!(last.count, count, "{name}: +Inf bucket is the count");
    count
}

#[tokio::test]
async fn metrics_parse_with_cumulative_histograms_and_every_series() {
    let env = Env::start(Opts::default()).await;
    let (token, _, _) = env.account("met-dev", 2).await;
    assert_eq!(env.login("met-dev", "wrong-pass", 2).await["result"], 102);
    let tcp = env.server().addrs.tcp;
    assert_eq!(tcp_verify(tcp, &token).await["result"], 0);
    // Again: from the token cache's memory (SQLite).
    assert_eq!(tcp_verify(tcp, &token).await["result"], 0);
    assert_eq!(tcp_verify(tcp, "no-such-token").await["result"], 4);
    // Two HTTPS successes of one endpoint: its series is resolved at the first and counted by both.
    for _ in 0..2 {
        let params = [
            ("access_token", token.as_str()),
            ("user_name_ls", "[\"met-dev\"]"),
        ];
        let p = signed("/get_users", &params);
        let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let v = env.post("/get_users", &p).await;
        assert_eq!(v["result"], 0, "{v}");
    }
    // One backend connection kept open while scraping.
    let mut held = tokio::io::BufReader::new(tokio::net::TcpStream::connect(tcp).await.unwrap());
    held.get_mut()
        .write_all(b"/get_users {\"user_name_ls\":\"[]\"}\n")
        .await
        .unwrap();
    let mut line = String::new();
    held.read_line(&mut line).await.unwrap();

    let text = env.metrics_text().await;
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

    let reg = [("endpoint", "/register"), ("result", "0")];
    assert_eq!(scalar(&s, "register_requests_total", &reg), 1.0, "{text}");
    assert_eq!(check_histogram(&s, "register_request_seconds", &reg), 1.0);
    let listed = [("endpoint", "/get_users"), ("result", "0")];
    assert_eq!(
        scalar(&s, "register_requests_total", &listed),
        2.0,
        "{text}"
    );
    assert_eq!(
        check_histogram(&s, "register_request_seconds", &listed),
        2.0
    );
    let bad_login = [("endpoint", "/login"), ("result", "102")];
    assert_eq!(
        check_histogram(&s, "register_request_seconds", &bad_login),
        1.0
    );
    let tcp_ok = [("endpoint", "tcp/verify_access_token"), ("result", "0")];
    assert_eq!(
        check_histogram(&s, "register_request_seconds", &tcp_ok),
        2.0
    );
    if !env.server().app.cfg.database.is_postgres() {
        // The token cache (SQLite only): the second check was a hit, and the token is held.
        let hits = scalar(
            &s,
            "register_token_cache_lookups_total",
            &[("outcome", "hit")],
        );
        assert!(hits >= 1.0, "{text}");
        assert!(
            scalar(
                &s,
                "register_token_cache_lookups_total",
                &[("outcome", "miss")]
            ) >= 1.0
        );
        assert!(
            scalar(&s, "register_token_cache_entries", &[]) >= 1.0,
            "{text}"
        );
    }
    let tcp_bad = [("endpoint", "tcp/verify_access_token"), ("result", "4")];
    assert_eq!(scalar(&s, "register_requests_total", &tcp_bad), 1.0);
    let create = [("op", "create_account"), ("ok", "true")];
    assert_eq!(
        check_histogram(&s, "register_xmpp_operation_seconds", &create),
        1.0
    );
    assert_eq!(scalar(&s, "register_logins_failed_total", &[]), 1.0);
    assert_eq!(scalar(&s, "register_xmpp_link_up", &[]), 1.0);
    assert_eq!(scalar(&s, "register_xmpp_link_connects_total", &[]), 1.0);
    assert_eq!(scalar(&s, "register_xmpp_link_reconnects_total", &[]), 0.0);
    assert!(scalar(&s, "register_tcp_connections", &[]) >= 1.0, "{text}");
    // Nothing else is running while the admin listener answers: the scrape is not a request.
    assert_eq!(scalar(&s, "register_requests_in_flight", &[]), 0.0);
    assert_eq!(scalar(&s, "register_hash_queue_jobs", &[]), 0.0);
    for name in [
        "register_logins_locked_total",
        "register_reconciler_repairs_total",
        "register_captcha_issued_total",
        "register_xmpp_link_failures_total",
    ] {
        assert!(find(&s, name, &[]).is_some(), "missing {name} in\n{text}");
    }
    drop(held);
}
