//! Which address is the visitor's: the socket peer, unless the peer is a trusted proxy.
//!
//! Only when the peer lies inside a configured trusted CIDR are `X-Forwarded-For` and then
//! `Forwarded` read, right to left, skipping further trusted hops; the first untrusted address is
//! the client. Without trusted proxies, forwarding headers are ignored, because any client can
//! send them.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::settings::Reader;

/// The `[proxy]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Proxies (CIDRs) whose forwarding headers are believed.
    pub trusted: Vec<IpNet>,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            trusted: r.cidrs("proxy.trusted"),
        }
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let from_xff = hops(headers, "x-forwarded-for", parse_xff_item);
    let hops = if from_xff.is_empty() {
        hops(headers, "forwarded", parse_forwarded_item)
    } else {
        from_xff
    };
    let mut leftmost = peer;
    for ip in hops.into_iter().rev() {
        if !is_trusted(ip, trusted) {
            return ip;
        }
        leftmost = ip;
    }
    leftmost
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4, so lookups and hashes agree.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of every hop in header order; parsing stops at the first malformed item, since
/// anything to its left cannot be trusted to mean anything.
fn hops(headers: &HeaderMap, name: &str, item: fn(&str) -> Option<IpAddr>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else {
            return Vec::new();
        };
        for part in text.split(',') {
            match item(part.trim()) {
                Some(ip) => out.push(canonical(ip)),
                None => out.clear(),
            }
        }
    }
    out
}

fn parse_xff_item(s: &str) -> Option<IpAddr> {
    parse_host(s)
}

/// One `Forwarded` element, e.g. `for=192.0.2.60;proto=http` or `for="[2001:db8::1]:4711"`.
fn parse_forwarded_item(s: &str) -> Option<IpAddr> {
    s.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        if k.eq_ignore_ascii_case("for") {
            parse_host(v.trim().trim_matches('"'))
        } else {
            None
        }
    })
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_host(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("203.0.113.7"),
            "6.6.6.6 could be forged"
        );
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7:5555"),
        ]);
        assert_eq!(client_ip(ip("::1"), &h, &trusted()), ip("203.0.113.7"));
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("10.2.2.2"),
            "all trusted: leftmost"
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 198.51.100.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn forwarded_header() {
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), &HeaderMap::new(), &[]),
            ip("203.0.113.9")
        );
    }
}
