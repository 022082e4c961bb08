//! CIDR parsing, and sets of IP ranges (IPv4 and IPv6 CIDRs) answering "is this address in the
//! set?" with a binary search over sorted, merged intervals: no locks, no allocation per lookup,
//! and a few hundred thousand ranges cost a few megabytes.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpRanges {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> IpRanges {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpRanges {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Parses a ranges file: one CIDR or address per line; `#` starts a comment. Errors name
    /// the line.
    pub fn parse(text: &str) -> Result<IpRanges, String> {
        let mut nets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            nets.push(parse_net(line).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
        Ok(IpRanges::new(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of disjoint intervals held.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(a)),
            },
        }
    }
}

/// A CIDR, or a single address as its /32 or /128.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

fn merge<T: Ord + Copy + num_like::Succ>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.succ() => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last interval starting at or before x is the only candidate.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

mod num_like {
    /// `x + 1`, saturating: adjacent intervals merge.
    pub(crate) trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn membership_v4_v6_and_mapped() {
        let r = IpRanges::parse(
            "# comment\n10.0.0.0/8\n192.0.2.7  # one address\n\n2001:db8::/32\n10.255.0.0/16\n",
        )
        .unwrap();
        assert_eq!(r.len(), 3, "nested 10.255/16 merges into 10/8");
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(r.contains(ip(yes)), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "11.0.0.0",
            "192.0.2.8",
            "2001:db9::",
            "::1",
        ] {
            assert!(!r.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn adjacent_ranges_merge_and_edges_hold() {
        let r = IpRanges::parse("0.0.0.0/1\n128.0.0.0/1\n").unwrap();
        assert_eq!(r.len(), 1);
        assert!(r.contains(ip("255.255.255.255")) && r.contains(ip("0.0.0.0")));
        let all6 = IpRanges::parse("::/0").unwrap();
        assert!(all6.contains(ip("ffff::1")));
    }

    #[test]
    fn bad_line_is_named() {
        let e = IpRanges::parse("10.0.0.0/8\nnot-an-ip\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
