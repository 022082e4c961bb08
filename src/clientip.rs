//! Which address is the visitor's: the socket peer, unless the peer is a trusted proxy.
//!
//! Only when the peer lies inside a configured trusted CIDR is a forwarding header read, and only
//! the one the proxies write (`proxy.header`: `X-Forwarded-For` or `Forwarded`); the other could
//! come from the client. The chain is read right to left, skipping trusted hops; the first
//! untrusted address is the visitor. A chain that cannot be read that far (an element that is not
//! an address, an empty element, bytes that are not text), a chain of trusted hops only, or no
//! header at all gives no address: the client controls everything left of the proxy's own entry,
//! so a malformed chain must never let it choose, and a proxy's own address is no visitor's.
//! Without trusted proxies, forwarding headers are ignored, because any client can send them.

use std::net::{IpAddr, Ipv6Addr};

use http::{HeaderMap, HeaderName, header};
use ipnet::IpNet;

use crate::settings::Reader;

/// The forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    #[default]
    XForwardedFor,
    Forwarded,
}

/// The `[proxy]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Proxies (CIDRs) whose forwarding headers are believed.
    pub trusted: Vec<IpNet>,
    pub header: Header,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            trusted: r.cidrs("proxy.trusted"),
            header: r.choice(
                "proxy.header",
                "x-forwarded-for",
                &[
                    ("x-forwarded-for", Header::XForwardedFor),
                    ("forwarded", Header::Forwarded),
                ],
            ),
        }
    }
}

/// Who sent a request, as far as its address tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A visitor at this address.
    Visitor(IpAddr),
    /// A trusted proxy's own request (no forwarding header, or only trusted hops), such as a
    /// backend that sends events without saying for whom: the visitor's address is unknown.
    Proxy(IpAddr),
    /// Forwarded by the trusted proxy `peer` with a chain that cannot be read up to its first
    /// untrusted hop: the visitor's address is unknown.
    Unknown { peer: IpAddr },
}

impl Peer {
    /// The address the pipeline may derive anything from: none (the unspecified address, which
    /// locates nowhere and matches no range) unless it is a visitor's.
    pub fn address(self) -> IpAddr {
        match self {
            Peer::Visitor(ip) => ip,
            Peer::Proxy(_) | Peer::Unknown { .. } => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// What the rate limiter counts this request against: requests without a visitor address
    /// share their proxy's bucket, so a flood of malformed or missing headers is limited as
    /// one client.
    pub(crate) fn limit_key(self) -> IpAddr {
        match self {
            Peer::Visitor(ip) | Peer::Proxy(ip) => ip,
            Peer::Unknown { peer } => peer,
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub fn peer(peer: IpAddr, headers: &HeaderMap, proxy: &Settings) -> Peer {
    let peer = canonical(peer);
    let trusted = &proxy.trusted;
    if !is_trusted(peer, trusted) {
        return Peer::Visitor(peer);
    }
    let (name, item): (&HeaderName, fn(&str) -> Option<IpAddr>) = match proxy.header {
        Header::XForwardedFor => (&X_FORWARDED_FOR, parse_host),
        Header::Forwarded => (&header::FORWARDED, parse_forwarded_item),
    };
    // Every element of every line of the header, from the right; an element that is not text
    // parses as nothing.
    let elements = headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
        .map(|e| std::str::from_utf8(e).ok().map(str::trim));
    let mut leftmost = peer;
    for element in elements {
        let Some(ip) = element.and_then(item).map(canonical) else {
            return Peer::Unknown { peer };
        };
        if !is_trusted(ip, trusted) {
            return Peer::Visitor(ip);
        }
        leftmost = ip;
    }
    Peer::Proxy(leftmost)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4, so lookups and hashes agree.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
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
/// Only the standard forms: `127.1`, `0x7f.0.0.1` or `2130706433` are not addresses here.
fn parse_host(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ok = after.is_empty() || after.strip_prefix(':').is_some_and(port);
        return if ok {
            host.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    let (host, p) = s.rsplit_once(':')?;
    if port(p) {
        host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        None
    }
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

    /// The visitor's address, or the trusted proxy's own.
    fn ip_of(p: IpAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        let proxy = Settings {
            trusted: trusted.to_vec(),
            header: Header::XForwardedFor,
        };
        match peer(p, h, &proxy) {
            Peer::Visitor(ip) | Peer::Proxy(ip) => ip,
            Peer::Unknown { .. } => panic!("unknown client"),
        }
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    fn proxies(header: Header) -> Settings {
        Settings {
            trusted: trusted(),
            header,
        }
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(ip_of(ip("203.0.113.9"), &h, &trusted()), ip("203.0.113.9"));
        assert_eq!(ip_of(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        assert_eq!(
            ip_of(ip("10.0.0.1"), &h, &trusted()),
            ip("203.0.113.7"),
            "6.6.6.6 could be forged"
        );
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7:5555"),
        ]);
        assert_eq!(ip_of(ip("::1"), &h, &trusted()), ip("203.0.113.7"));
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]);
        assert_eq!(
            ip_of(ip("10.0.0.1"), &h, &trusted()),
            ip("10.2.2.2"),
            "all trusted: leftmost"
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 198.51.100.1")]);
        assert_eq!(ip_of(ip("10.0.0.1"), &h, &trusted()), ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_header() {
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )]);
        assert_eq!(
            peer(ip("10.0.0.1"), &h, &proxies(Header::Forwarded)),
            Peer::Visitor(ip("2001:db8:cafe::17"))
        );
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        assert_eq!(
            ip_of(ip("::ffff:203.0.113.9"), &HeaderMap::new(), &[]),
            ip("203.0.113.9")
        );
    }

    /// Spoofing attempts through the trusted proxy 10.0.0.1, which appends the address it saw
    /// (203.0.113.7 unless said otherwise) to whatever the client sent.
    #[test]
    fn spoofing_attempts_never_choose_the_address() {
        use Header::{Forwarded, XForwardedFor};
        use Peer::{Proxy, Unknown, Visitor};
        let from = ip("10.0.0.1");
        let unknown = Unknown { peer: from };
        let v = |s: &str| Visitor(ip(s));
        type Lines = Vec<(&'static str, &'static [u8])>;
        let cases: Vec<(&str, Header, Lines, Peer)> = vec![
            (
                "forged left of the real hop",
                XForwardedFor,
                vec![("x-forwarded-for", b"1.2.3.4, 203.0.113.7")],
                v("203.0.113.7"),
            ),
            (
                "forged trusted hop left of the real one",
                XForwardedFor,
                vec![("x-forwarded-for", b"10.9.9.9, 203.0.113.7")],
                v("203.0.113.7"),
            ),
            (
                "bytes that are not text in a forged element",
                XForwardedFor,
                vec![("x-forwarded-for", b"1.2.3.4\xc3, 203.0.113.7")],
                v("203.0.113.7"),
            ),
            (
                "non-text line, then the proxy's line",
                XForwardedFor,
                vec![
                    ("x-forwarded-for", b"\xff\xfe"),
                    ("x-forwarded-for", b"203.0.113.7"),
                ],
                v("203.0.113.7"),
            ),
            (
                "non-text bytes in the proxy's hop",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7\xff")],
                unknown,
            ),
            (
                "malformed chain with Forwarded as a fallback",
                XForwardedFor,
                vec![
                    ("x-forwarded-for", b"garbage"),
                    ("forwarded", b"for=1.2.3.4"),
                ],
                unknown,
            ),
            (
                "Forwarded ignored when X-Forwarded-For is present",
                XForwardedFor,
                vec![
                    ("forwarded", b"for=1.2.3.4"),
                    ("x-forwarded-for", b"203.0.113.7"),
                ],
                v("203.0.113.7"),
            ),
            (
                "empty element as the last hop",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7, ")],
                unknown,
            ),
            (
                "empty element between trusted hops",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7, , 10.1.1.1")],
                unknown,
            ),
            (
                "empty element left of the real hop",
                XForwardedFor,
                vec![("x-forwarded-for", b"1.2.3.4,,203.0.113.7")],
                v("203.0.113.7"),
            ),
            (
                "empty header",
                XForwardedFor,
                vec![("x-forwarded-for", b"")],
                unknown,
            ),
            (
                "obfuscated IPv4, short form",
                XForwardedFor,
                vec![("x-forwarded-for", b"127.1")],
                unknown,
            ),
            (
                "obfuscated IPv4, hex",
                XForwardedFor,
                vec![("x-forwarded-for", b"0x7f.0.0.1")],
                unknown,
            ),
            (
                "obfuscated IPv4, one number",
                XForwardedFor,
                vec![("x-forwarded-for", b"2130706433")],
                unknown,
            ),
            (
                "obfuscated IPv4, octal",
                XForwardedFor,
                vec![("x-forwarded-for", b"0177.0.0.01")],
                unknown,
            ),
            (
                "IPv4 with port",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7:8080")],
                v("203.0.113.7"),
            ),
            (
                "IPv4 with a port that is not one",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7:http")],
                unknown,
            ),
            (
                "bracketed IPv6 with port",
                XForwardedFor,
                vec![("x-forwarded-for", b"[2001:db8::7]:443")],
                v("2001:db8::7"),
            ),
            (
                "bracketed IPv6 with trailing junk",
                XForwardedFor,
                vec![("x-forwarded-for", b"[2001:db8::7]junk")],
                unknown,
            ),
            (
                "IPv4-mapped IPv6 of a trusted proxy",
                XForwardedFor,
                vec![("x-forwarded-for", b"203.0.113.7, ::ffff:10.1.1.1")],
                v("203.0.113.7"),
            ),
            (
                "IPv4-mapped IPv6 visitor",
                XForwardedFor,
                vec![("x-forwarded-for", b"::ffff:203.0.113.7")],
                v("203.0.113.7"),
            ),
            (
                "IPv6 zone id",
                XForwardedFor,
                vec![("x-forwarded-for", b"fe80::1%eth0")],
                unknown,
            ),
            (
                "duplicate headers, the proxy's last",
                XForwardedFor,
                vec![
                    ("x-forwarded-for", b"1.2.3.4"),
                    ("x-forwarded-for", b"5.6.7.8, 203.0.113.7"),
                ],
                v("203.0.113.7"),
            ),
            (
                "only trusted hops: the proxy side itself",
                XForwardedFor,
                vec![("x-forwarded-for", b"10.2.2.2, 10.3.3.3")],
                Proxy(ip("10.2.2.2")),
            ),
            (
                "Forwarded alone, obfuscated",
                Forwarded,
                vec![("forwarded", b"for=0x7f.1")],
                unknown,
            ),
            (
                "Forwarded alone, without for=",
                Forwarded,
                vec![("forwarded", b"proto=https")],
                unknown,
            ),
            (
                "Forwarded alone, quoted IPv6",
                Forwarded,
                vec![("forwarded", b"for=\"[2001:db8::9]:1\"")],
                v("2001:db8::9"),
            ),
            (
                "hostname instead of an address",
                XForwardedFor,
                vec![("x-forwarded-for", b"localhost")],
                unknown,
            ),
            (
                "no forwarding header: the proxy's own request",
                XForwardedFor,
                vec![],
                Proxy(from),
            ),
            (
                "the proxy writes Forwarded; the client's X-Forwarded-For passed through",
                Forwarded,
                vec![
                    ("x-forwarded-for", b"1.2.3.4"),
                    ("forwarded", b"for=203.0.113.7"),
                ],
                v("203.0.113.7"),
            ),
            (
                "the proxy writes Forwarded; only the client's X-Forwarded-For",
                Forwarded,
                vec![("x-forwarded-for", b"1.2.3.4")],
                Proxy(from),
            ),
            (
                "the proxy writes X-Forwarded-For; only a client's Forwarded",
                XForwardedFor,
                vec![("forwarded", b"for=1.2.3.4")],
                Proxy(from),
            ),
        ];
        assert!(cases.len() >= 20);
        for (what, header, pairs, want) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(k, HeaderValue::from_bytes(v).unwrap());
            }
            assert_eq!(peer(from, &h, &proxies(header)), want, "{what}");
        }
        // What a request without a visitor address may be used for: nothing derived from an
        // address; it is limited as its proxy.
        for nobody in [unknown, Proxy(from)] {
            assert!(nobody.address().is_unspecified());
            assert_eq!(nobody.limit_key(), from);
        }
    }
}
