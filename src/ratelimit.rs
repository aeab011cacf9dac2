//! Per-client-IP rate limiting for the endpoints that cost CPU or invite guessing.
//!
//! A fixed one-minute window per IP, in memory: each instance limits on its own (documented in
//! SECURITY.md). The table is pruned as windows expire, so a scan of many addresses cannot grow it
//! without bound for longer than a minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

pub struct RateLimiter {
    per_minute: u32,
    clock: Arc<dyn Clock>,
    table: Mutex<(i64, HashMap<IpAddr, u32>)>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter {
            per_minute,
            clock,
            table: Mutex::new((0, HashMap::new())),
        }
    }

    /// Count one request from `ip`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let window = self.clock.now() / 60;
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.0 != window {
            t.0 = window;
            t.1.clear();
        }
        let n = t.1.entry(ip).or_insert(0);
        *n = n.saturating_add(1);
        *n <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn limits_per_ip_and_window() {
        let c = ManualClock::new(600);
        let r = RateLimiter::new(3, Arc::new(c.clone()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(r.allow(a) && r.allow(a) && r.allow(a));
        assert!(!r.allow(a));
        assert!(r.allow(b));
        c.advance(60);
        assert!(r.allow(a));
    }
}
