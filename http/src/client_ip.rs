//! The client's IP address, for rate limits and logs.
//!
//! `X-Forwarded-For` is believed only when the TCP peer is a configured trusted proxy. Then the
//! list (all such headers, in order, comma-separated) is walked from the right — the entries
//! appended by our own proxies — and the first entry that is not itself a trusted proxy is the
//! client. Entries to its left were written by the client and could be anything. An entry that does
//! not parse stops the walk at the last address we could trust. IPv4-mapped IPv6 addresses are
//! reported as IPv4.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Resolves the client IP of a request from `peer` through the `X-Forwarded-For` values.
pub(crate) fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut current = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            return current;
        };
        if !is_trusted(ip, trusted) {
            return ip;
        }
        current = ip;
    }
    current
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["1.1.1.1"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["1.1.1.1"], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_entry() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                ["6.6.6.6, 198.51.100.7, 10.0.0.2"],
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::1"), ["6.6.6.6", "198.51.100.7:4711"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["[2001:db8::5]:80"], &trusted),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn trusted_peer_without_usable_header() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), [], &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["6.6.6.6, garbage, 10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn mapped_ipv4_is_reported_as_ipv4() {
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), [], &[]), ip("127.0.0.1"));
        let trusted = nets(&["127.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), ["198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
    }
}
