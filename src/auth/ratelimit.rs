//! Rate limits: per client network for every HTTPS endpoint, and per account for requests made
//! with an access token.
//!
//! A client network is the client's IPv4 address, or its IPv6 address cut to
//! `security.ipv6_prefix` bits (default /64: one subscriber's whole allocation), so rotating
//! addresses inside one prefix buys nothing. An IPv4-mapped IPv6 address counts as its IPv4
//! address.
//!
//! Fixed one-minute windows, in memory: each instance limits on its own (SECURITY.md). The table
//! starts over with each window, so a scan of many addresses cannot grow it for longer than a
//! minute.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::service::config::SecuritySection;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// `/verify_code`, `/login`, `/register`, `/cancel`, `/change_password`, `/set_user_banding`,
    /// `/set_user_unbanding`: they cost a password hash, a captcha or XMPP logins, or invite
    /// guessing (`security.rate_per_minute`).
    Costly,
    /// Every other endpoint (`security.api_rate_per_minute`).
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Network(Budget, IpAddr),
    Account(i64),
}

pub struct RateLimiter {
    costly: u32,
    api: u32,
    account: u32,
    v6_prefix: u8,
    clock: Arc<dyn Clock>,
    table: Mutex<(i64, HashMap<Key, u32>)>,
}

/// A refusal: retry after this many seconds (the end of the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl RateLimiter {
    pub fn new(sec: &SecuritySection, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter {
            costly: sec.rate_per_minute,
            api: sec.api_rate_per_minute,
            account: sec.account_rate_per_minute,
            v6_prefix: sec.ipv6_prefix.min(128),
            clock,
            table: Mutex::new((0, HashMap::new())),
        }
    }

    /// Seconds until the current window ends, for a `Retry-After`.
    pub fn retry_after(&self) -> u64 {
        (60 - self.clock.now().rem_euclid(60)) as u64
    }

    /// The client network `ip` belongs to.
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        network(ip, self.v6_prefix)
    }

    /// Count one request of `budget` from `ip`'s network.
    pub fn allow_network(&self, budget: Budget, ip: IpAddr) -> Result<(), RetryAfter> {
        let limit = match budget {
            Budget::Costly => self.costly,
            Budget::Api => self.api,
        };
        self.count(Key::Network(budget, self.network(ip)), limit)
    }

    /// Count one request made with a token of account `id`.
    pub fn allow_account(&self, id: i64) -> Result<(), RetryAfter> {
        self.count(Key::Account(id), self.account)
    }

    fn count(&self, key: Key, limit: u32) -> Result<(), RetryAfter> {
        if limit == 0 {
            return Ok(());
        }
        let window = self.clock.now().div_euclid(60);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.0 != window {
            t.0 = window;
            t.1.clear();
        }
        let n = t.1.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        if *n <= limit {
            Ok(())
        } else {
            drop(t);
            Err(RetryAfter(self.retry_after()))
        }
    }
}

/// `ip` with its host bits cleared: IPv4 as is, IPv6 to `v6_prefix` bits.
pub fn network(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = match v6_prefix {
                    0 => 0,
                    p => u128::MAX << (128 - u32::from(p.min(128))),
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(costly: u32, api: u32, account: u32, clock: &ManualClock) -> RateLimiter {
        let sec = SecuritySection {
            rate_per_minute: costly,
            api_rate_per_minute: api,
            account_rate_per_minute: account,
            ..SecuritySection::default()
        };
        RateLimiter::new(&sec, Arc::new(clock.clone()))
    }

    #[test]
    fn limits_per_network_budget_and_window() {
        let c = ManualClock::new(600);
        let r = limiter(3, 2, 0, &c);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(r.allow_network(Budget::Costly, a), Ok(()));
        }
        assert_eq!(r.allow_network(Budget::Costly, a), Err(RetryAfter(60)));
        assert_eq!(r.allow_network(Budget::Costly, b), Ok(()));
        // The other budget is counted apart.
        assert_eq!(r.allow_network(Budget::Api, a), Ok(()));
        assert_eq!(r.allow_network(Budget::Api, a), Ok(()));
        assert!(r.allow_network(Budget::Api, a).is_err());
        c.advance(45);
        assert_eq!(r.allow_network(Budget::Costly, a), Err(RetryAfter(15)));
        c.advance(15);
        assert_eq!(r.allow_network(Budget::Costly, a), Ok(()));
    }

    #[test]
    fn addresses_in_one_v6_prefix_are_one_client() {
        let c = ManualClock::new(600);
        let r = limiter(2, 0, 0, &c);
        let ips: Vec<IpAddr> = [
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff::9",
            "2001:db8:1:2:1:2:3:4",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(r.allow_network(Budget::Costly, ips[0]), Ok(()));
        assert_eq!(r.allow_network(Budget::Costly, ips[1]), Ok(()));
        assert!(r.allow_network(Budget::Costly, ips[2]).is_err());
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(r.allow_network(Budget::Costly, other), Ok(()));
        assert_eq!(
            network("::ffff:192.0.2.7".parse().unwrap(), 64),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("2001:db8::1".parse().unwrap(), 128),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("2001:db8:aaaa:bbbb:cccc::1".parse().unwrap(), 48),
            "2001:db8:aaaa::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn limits_per_account() {
        let c = ManualClock::new(0);
        let r = limiter(0, 0, 2, &c);
        assert_eq!(r.allow_account(7), Ok(()));
        assert_eq!(r.allow_account(7), Ok(()));
        assert!(r.allow_account(7).is_err());
        assert_eq!(r.allow_account(8), Ok(()));
        // 0 switches a limit off.
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(r.allow_network(Budget::Costly, ip), Ok(()));
        }
    }
}
