//! Prometheus metrics, kept in a `prometheus-client` registry and rendered in the Prometheus text
//! format (0.0.4) on the admin listener's `/metrics`.
//!
//! Every series is documented in docs/CONFIG.md ("Metrics"); dist/prometheus/alerts.yml has
//! example alert rules. Names follow the Prometheus conventions: base units (`_seconds`),
//! counters end in `_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::service::striped_metrics::{StripedCounter, StripedHistogram};
use crate::store::cache::CacheProbe;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds: from a cached TCP token check (tens of microseconds) to an XMPP
/// operation near its timeout.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

fn striped_histogram() -> StripedHistogram {
    StripedHistogram::new(&BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    result: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    ok: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

/// One endpoint's and result's request metrics (see [`Metrics::request_metric`]): the same
/// series as [`Metrics::request`] updates.
pub struct RequestMetric {
    count: StripedCounter,
    seconds: StripedHistogram,
}

impl RequestMetric {
    pub fn record(&self, elapsed: Duration) {
        self.count.inc();
        self.seconds.observe(elapsed);
    }
}

/// Values read at scrape time from the parts that own them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scrape {
    pub link_up: bool,
    /// Component link connections since start (the first one included).
    pub link_connects: u64,
    pub link_failures: u64,
    /// Password hashing jobs waiting or running.
    pub hash_queue: usize,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// Striped (see `striped_metrics`): every answer updates them, from every worker.
    requests: Family<RequestLabels, StripedCounter>,
    request_seconds: Family<RequestLabels, StripedHistogram, fn() -> StripedHistogram>,
    xmpp_ops: Family<OpLabels, Counter>,
    xmpp_op_seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    tcp_connections: Gauge,
    hash_queue: Gauge,
    rate_limited: Family<EndpointLabel, Counter>,
    hash_queue_full: Family<EndpointLabel, Counter>,
    captcha_issued: Counter,
    captcha_failed: Counter,
    logins_failed: Counter,
    logins_locked: Counter,
    repairs: Counter,
    link_up: Gauge,
    link_connects: Counter,
    link_reconnects: Counter,
    link_failures: Counter,
    /// The last values of the link's counters folded into the registry's counters.
    link_seen: [AtomicU64; 3],
    token_cache: Option<CacheProbe>,
    token_cache_entries: Gauge,
    token_cache_lookups: Family<OutcomeLabel, Counter>,
    /// The last (hits, misses) folded into `token_cache_lookups`.
    cache_seen: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics that also report the token cache behind `probe` (SQLite with a cache).
    pub fn with_token_cache(probe: Option<CacheProbe>) -> Metrics {
        Metrics {
            token_cache: probe,
            ..Metrics::new()
        }
    }

    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(striped_histogram),
            xmpp_ops: Family::default(),
            xmpp_op_seconds: Family::new_with_constructor(histogram),
            in_flight: Gauge::default(),
            tcp_connections: Gauge::default(),
            hash_queue: Gauge::default(),
            rate_limited: Family::default(),
            hash_queue_full: Family::default(),
            captcha_issued: Counter::default(),
            captcha_failed: Counter::default(),
            logins_failed: Counter::default(),
            logins_locked: Counter::default(),
            repairs: Counter::default(),
            link_up: Gauge::default(),
            link_connects: Counter::default(),
            link_reconnects: Counter::default(),
            link_failures: Counter::default(),
            link_seen: Default::default(),
            token_cache: None,
            token_cache_entries: Gauge::default(),
            token_cache_lookups: Family::default(),
            cache_seen: Default::default(),
        };
        let r = &mut m.registry;
        r.register(
            "register_requests",
            "Requests answered, by endpoint and result code",
            m.requests.clone(),
        );
        r.register(
            "register_request_seconds",
            "Time to answer a request, by endpoint and result code",
            m.request_seconds.clone(),
        );
        r.register(
            "register_xmpp_operations",
            "Operations on the XMPP server, by operation and success",
            m.xmpp_ops.clone(),
        );
        r.register(
            "register_xmpp_operation_seconds",
            "Time an operation on the XMPP server took, by operation and success",
            m.xmpp_op_seconds.clone(),
        );
        r.register(
            "register_requests_in_flight",
            "Requests being answered (HTTPS and TCP)",
            m.in_flight.clone(),
        );
        r.register(
            "register_tcp_connections",
            "Open connections on the TCP listener",
            m.tcp_connections.clone(),
        );
        r.register(
            "register_hash_queue_jobs",
            "Password hashing jobs waiting or running (security.hash_queue bounds it)",
            m.hash_queue.clone(),
        );
        r.register(
            "register_rate_limited",
            "Requests refused with 429 by a rate limit, by endpoint",
            m.rate_limited.clone(),
        );
        r.register(
            "register_hash_queue_full",
            "Requests refused with 503 because the hashing queue was full, by endpoint",
            m.hash_queue_full.clone(),
        );
        r.register(
            "register_captcha_issued",
            "Captcha challenges issued",
            m.captcha_issued.clone(),
        );
        r.register(
            "register_captcha_failed",
            "Captcha answers missing, wrong or expired",
            m.captcha_failed.clone(),
        );
        r.register(
            "register_logins_failed",
            "Password verifications that failed",
            m.logins_failed.clone(),
        );
        r.register(
            "register_logins_locked",
            "Login attempts refused because the account or network was locked out",
            m.logins_locked.clone(),
        );
        r.register(
            "register_reconciler_repairs",
            "Unfinished records the reconciler repaired",
            m.repairs.clone(),
        );
        r.register(
            "register_xmpp_link_up",
            "1 while the component link is up",
            m.link_up.clone(),
        );
        r.register(
            "register_xmpp_link_connects",
            "Component link connections made",
            m.link_connects.clone(),
        );
        r.register(
            "register_xmpp_link_reconnects",
            "Component link connections made after the first (each follows an outage)",
            m.link_reconnects.clone(),
        );
        r.register(
            "register_token_cache_entries",
            "Access tokens held by the in-memory token cache (SQLite with a cache)",
            m.token_cache_entries.clone(),
        );
        r.register(
            "register_token_cache_lookups",
            "Token lookups by the cache, answered from memory (hit) or sent to the store (miss)",
            m.token_cache_lookups.clone(),
        );
        r.register(
            "register_xmpp_link_failures",
            "Component link connection attempts that failed",
            m.link_failures.clone(),
        );
        m
    }

    /// Count a request and its latency. Endpoints are the endpoint table's static labels, so
    /// counting allocates nothing after a series' first use.
    pub fn request(&self, endpoint: &'static str, result: i64, elapsed: Duration) {
        let l = RequestLabels { endpoint, result };
        self.requests.get_or_create(&l).inc();
        self.request_seconds.get_or_create(&l).observe(elapsed);
    }

    /// [`request`](Self::request)'s metrics for one endpoint and result, looked up once: for a
    /// path that counts every request (the TCP token check from memory), where the two label
    /// lookups cost more than the two updates.
    pub fn request_metric(&self, endpoint: &'static str, result: i64) -> RequestMetric {
        let l = RequestLabels { endpoint, result };
        RequestMetric {
            count: self.requests.get_or_create_owned(&l),
            seconds: self.request_seconds.get_or_create_owned(&l),
        }
    }

    /// Count an operation on the XMPP server and its latency.
    pub fn xmpp_op(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let l = OpLabels { op, ok };
        self.xmpp_ops.get_or_create(&l).inc();
        self.xmpp_op_seconds
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
    }

    /// A request refused with 429 (`busy == false`) or 503 (the hashing queue is full).
    pub fn refused(&self, endpoint: &'static str, busy: bool) {
        let family = if busy {
            &self.hash_queue_full
        } else {
            &self.rate_limited
        };
        family.get_or_create(&EndpointLabel { endpoint }).inc();
    }

    /// A request is being answered until the guard is dropped.
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// A TCP connection opened (`true`) or closed (`false`).
    pub fn tcp_connection(&self, open: bool) {
        if open {
            self.tcp_connections.inc();
        } else {
            self.tcp_connections.dec();
        }
    }

    pub fn captcha_issued(&self) {
        self.captcha_issued.inc();
    }
    pub fn captcha_failed(&self) {
        self.captcha_failed.inc();
    }
    pub fn login_failed(&self, locked: bool) {
        if locked {
            self.logins_locked.inc();
        } else {
            self.logins_failed.inc();
        }
    }
    /// Failed logins so far: `(password verdicts that failed, refused as locked)`.
    pub fn login_failures(&self) -> (u64, u64) {
        (self.logins_failed.get(), self.logins_locked.get())
    }
    pub fn repaired(&self, n: u64) {
        self.repairs.inc_by(n);
    }

    /// Prometheus text exposition, after taking in the values read at scrape time.
    pub fn render(&self, s: Scrape) -> String {
        self.link_up.set(s.link_up as i64);
        self.hash_queue.set(s.hash_queue as i64);
        let reconnects = s.link_connects.saturating_sub(1);
        for (i, (counter, now)) in [
            (&self.link_connects, s.link_connects),
            (&self.link_reconnects, reconnects),
            (&self.link_failures, s.link_failures),
        ]
        .into_iter()
        .enumerate()
        {
            // The link counts on its own; fold what is new into the registry's counter.
            let before = self.link_seen[i].fetch_max(now, Ordering::AcqRel);
            if now > before {
                counter.inc_by(now - before);
            }
        }
        if let Some(c) = &self.token_cache {
            self.token_cache_entries.set(c.entries() as i64);
            let (hits, misses) = c.lookups();
            for (i, (outcome, now)) in [("hit", hits), ("miss", misses)].into_iter().enumerate() {
                let before = self.cache_seen[i].fetch_max(now, Ordering::AcqRel);
                let counter = self
                    .token_cache_lookups
                    .get_or_create(&OutcomeLabel { outcome });
                if now > before {
                    counter.inc_by(now - before);
                }
            }
        }
        let mut o = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut o, &self.registry);
        o
    }
}

/// Decrements its gauge when dropped.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(g: &Gauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_counters_and_gauges() {
        let m = Metrics::new();
        m.request("/login", 102, Duration::from_millis(3));
        m.request("/login", 102, Duration::from_millis(300));
        m.xmpp_op("bind", Duration::from_millis(20), true);
        m.refused("/login", false);
        let g = m.in_flight();
        let text = m.render(Scrape {
            link_up: true,
            link_connects: 3,
            link_failures: 1,
            hash_queue: 2,
        });
        drop(g);
        for needle in [
            "register_requests_total{endpoint=\"/login\",result=\"102\"} 2",
            "register_request_seconds_bucket{endpoint=\"/login\",result=\"102\",le=\"0.005\"} 1",
            "register_request_seconds_count{endpoint=\"/login\",result=\"102\"} 2",
            "register_xmpp_operations_total{op=\"bind\",ok=\"true\"} 1",
            "register_rate_limited_total{endpoint=\"/login\"} 1",
            "register_requests_in_flight 1",
            "register_hash_queue_jobs 2",
            "register_xmpp_link_up 1",
            "register_xmpp_link_connects_total 3",
            "register_xmpp_link_reconnects_total 2",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // A second scrape with the same link counts adds nothing.
        let again = m.render(Scrape {
            link_connects: 3,
            ..Scrape::default()
        });
        assert!(
            again.contains("register_xmpp_link_connects_total 3"),
            "{again}"
        );
        assert!(again.contains("register_requests_in_flight 0"), "{again}");
    }

    /// A metric looked up once updates the very series `request` does.
    #[test]
    fn a_request_metric_looked_up_once_counts_in_the_same_series() {
        let m = Metrics::new();
        let hot = m.request_metric("tcp/verify_access_token", 0);
        hot.record(Duration::from_micros(2));
        m.request("tcp/verify_access_token", 0, Duration::from_millis(30));
        hot.record(Duration::from_micros(3));
        let text = m.render(Scrape::default());
        let series = "{endpoint=\"tcp/verify_access_token\",result=\"0\"}";
        for needle in [
            format!("register_requests_total{series} 3"),
            format!("register_request_seconds_count{series} 3"),
        ] {
            assert!(text.contains(&needle), "missing {needle} in\n{text}");
        }
        let first_bucket = "register_request_seconds_bucket{endpoint=\"tcp/verify_access_token\",result=\"0\",le=\"0.0001\"} 2";
        assert!(text.contains(first_bucket), "{text}");
    }
}
