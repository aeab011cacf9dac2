//! Prometheus metrics, rendered as text on the admin listener's `/metrics`.
//!
//! Plain atomics and one small mutex-guarded map: no registry crate, and the hot path (a request
//! counted) takes one short lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Series {
    count: u64,
    sum_secs: f64,
}

/// Counters the service keeps.
#[derive(Default)]
pub struct Metrics {
    /// (endpoint, result code) → count, latency sum.
    requests: Mutex<BTreeMap<(&'static str, i64), Series>>,
    /// (operation, ok) → count, latency sum.
    xmpp_ops: Mutex<BTreeMap<(&'static str, bool), Series>>,
    captcha_issued: AtomicU64,
    captcha_failed: AtomicU64,
    logins_failed: AtomicU64,
    logins_locked: AtomicU64,
    repairs: AtomicU64,
}

impl Metrics {
    /// Count a request. Endpoints are the routes' static names, so counting allocates nothing.
    pub fn request(&self, endpoint: &'static str, result: i64, elapsed: Duration) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((endpoint, result)).or_default();
        s.count += 1;
        s.sum_secs += elapsed.as_secs_f64();
    }
    pub fn xmpp_op(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let mut m = self.xmpp_ops.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((op, ok)).or_default();
        s.count += 1;
        s.sum_secs += elapsed.as_secs_f64();
    }
    pub fn captcha_issued(&self) {
        self.captcha_issued.fetch_add(1, Ordering::Relaxed);
    }
    pub fn captcha_failed(&self) {
        self.captcha_failed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn login_failed(&self, locked: bool) {
        let c = if locked {
            &self.logins_locked
        } else {
            &self.logins_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// Failed logins so far: `(password verdicts that failed, refused as locked)`.
    pub fn login_failures(&self) -> (u64, u64) {
        (
            self.logins_failed.load(Ordering::Relaxed),
            self.logins_locked.load(Ordering::Relaxed),
        )
    }
    pub fn repaired(&self, n: u64) {
        self.repairs.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, link_up: bool, link_connects: u64, link_failures: u64) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# TYPE register_requests_total counter");
        let reqs = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((ep, code), s) in reqs.iter() {
            let _ = writeln!(
                o,
                "register_requests_total{{endpoint=\"{ep}\",result=\"{code}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(o, "# TYPE register_request_seconds_sum counter");
        for ((ep, code), s) in reqs.iter() {
            let _ = writeln!(
                o,
                "register_request_seconds_sum{{endpoint=\"{ep}\",result=\"{code}\"}} {}",
                s.sum_secs
            );
        }
        drop(reqs);
        let ops = self.xmpp_ops.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "# TYPE register_xmpp_operations_total counter");
        for ((op, ok), s) in ops.iter() {
            let _ = writeln!(
                o,
                "register_xmpp_operations_total{{op=\"{op}\",ok=\"{ok}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(o, "# TYPE register_xmpp_operation_seconds_sum counter");
        for ((op, ok), s) in ops.iter() {
            let _ = writeln!(
                o,
                "register_xmpp_operation_seconds_sum{{op=\"{op}\",ok=\"{ok}\"}} {}",
                s.sum_secs
            );
        }
        drop(ops);
        let gauges: [(&str, &str, u64); 8] = [
            ("register_xmpp_link_up", "gauge", link_up as u64),
            (
                "register_xmpp_link_connects_total",
                "counter",
                link_connects,
            ),
            (
                "register_xmpp_link_failures_total",
                "counter",
                link_failures,
            ),
            (
                "register_captcha_issued_total",
                "counter",
                self.captcha_issued.load(Ordering::Relaxed),
            ),
            (
                "register_captcha_failed_total",
                "counter",
                self.captcha_failed.load(Ordering::Relaxed),
            ),
            (
                "register_logins_failed_total",
                "counter",
                self.logins_failed.load(Ordering::Relaxed),
            ),
            (
                "register_logins_locked_total",
                "counter",
                self.logins_locked.load(Ordering::Relaxed),
            ),
            (
                "register_reconciler_repairs_total",
                "counter",
                self.repairs.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, v) in gauges {
            let _ = writeln!(o, "# TYPE {name} {kind}\n{name} {v}");
        }
        o
    }
}
