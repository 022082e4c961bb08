//! Per-site shields from the configuration: addresses, countries, pages and host names whose
//! events a site owner does not want counted (their own office, a staging host, `/admin/**`).

use std::net::IpAddr;

use crate::check::DropReason;
use crate::check::iprange::IpRanges;
use crate::config;

/// Longest accepted pattern; keeps matching cost bounded.
pub const MAX_PATTERN_LEN: usize = 200;

#[derive(Debug, Default)]
pub struct Shield {
    block_ips: IpRanges,
    /// Upper-case ISO 3166-1 alpha-2 codes.
    block_countries: Vec<String>,
    exclude_paths: Vec<PathPattern>,
    allow_hostnames: Vec<HostPattern>,
}

impl Shield {
    /// Compiles validated configuration (see `config`; invalid entries never get here).
    pub fn new(c: &config::Shields) -> Shield {
        Shield {
            block_ips: IpRanges::new(c.block_ips.iter().copied()),
            block_countries: c.block_countries.clone(),
            exclude_paths: c
                .exclude_paths
                .iter()
                .filter_map(|p| PathPattern::parse(p).ok())
                .collect(),
            allow_hostnames: c
                .allow_hostnames
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect(),
        }
    }

    /// The shields decidable before enrichment: client address, page host and path.
    pub fn check(&self, ip: IpAddr, hostname: &str, pathname: &str) -> Result<(), DropReason> {
        if self.block_ips.contains(ip) {
            return Err(DropReason::BlockedIp);
        }
        if !self.allow_hostnames.is_empty()
            && !self.allow_hostnames.iter().any(|h| h.matches(hostname))
        {
            return Err(DropReason::HostnameNotAllowed);
        }
        if self.exclude_paths.iter().any(|p| p.matches(pathname)) {
            return Err(DropReason::ExcludedPath);
        }
        Ok(())
    }

    /// Whether events located in this country are not counted.
    pub fn blocks_country(&self, country_code: &str) -> bool {
        !country_code.is_empty()
            && self
                .block_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country_code))
    }

    pub fn has_country_block(&self) -> bool {
        !self.block_countries.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes within one path segment.
    Star,
    /// `**`: any run of bytes, across segments.
    DoubleStar,
}

/// A page path pattern: `/blog/*` matches `/blog/post` but not `/blog/a/b`; `/admin/**` matches
/// everything below `/admin/`. Matching simulates the pattern as an automaton, so its cost is
/// at most (path length × pattern length) whatever the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    tokens: Vec<Token>,
}

impl PathPattern {
    pub fn parse(p: &str) -> Result<PathPattern, String> {
        if !p.starts_with('/') {
            return Err(format!("{p:?} must start with /"));
        }
        if p.len() > MAX_PATTERN_LEN {
            return Err(format!("{p:?} is longer than {MAX_PATTERN_LEN} bytes"));
        }
        let mut tokens = Vec::with_capacity(p.len());
        let mut bytes = p.bytes().peekable();
        while let Some(b) = bytes.next() {
            tokens.push(match b {
                b'*' if bytes.peek() == Some(&b'*') => {
                    bytes.next();
                    while bytes.peek() == Some(&b'*') {
                        bytes.next();
                    }
                    Token::DoubleStar
                }
                b'*' => Token::Star,
                b => Token::Byte(b),
            });
        }
        Ok(PathPattern { tokens })
    }

    pub fn matches(&self, path: &str) -> bool {
        let m = self.tokens.len();
        // states[i]: the first i tokens can match the input read so far.
        let mut states = vec![false; m + 1];
        let mut next = vec![false; m + 1];
        states[0] = true;
        self.close(&mut states);
        for b in path.bytes() {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for i in 0..m {
                if !states[i] {
                    continue;
                }
                match self.tokens[i] {
                    Token::Byte(t) if t == b => next[i + 1] = true,
                    Token::Star if b != b'/' => next[i] = true,
                    Token::DoubleStar => next[i] = true,
                    _ => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut states, &mut next);
            self.close(&mut states);
        }
        states[m]
    }

    /// A star may match nothing: whoever stands before it also stands after it.
    fn close(&self, states: &mut [bool]) {
        for i in 0..self.tokens.len() {
            if states[i] && !matches!(self.tokens[i], Token::Byte(_)) {
                states[i + 1] = true;
            }
        }
    }
}

/// A host name, or `*.example.com` for every subdomain of example.com. Compared after the same
/// normalisation as page hosts (lower case, no `www.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    subdomains: bool,
}

impl HostPattern {
    pub fn parse(h: &str) -> Result<HostPattern, String> {
        let lower = h.trim().to_ascii_lowercase();
        let (subdomains, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let rest = rest.strip_prefix("www.").unwrap_or(rest);
        let valid = !rest.is_empty()
            && rest.len() <= 253
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            return Err(format!(
                "{h:?} is not a host name or *.host pattern (no scheme, path or port)"
            ));
        }
        Ok(HostPattern {
            host: rest.to_string(),
            subdomains,
        })
    }

    pub fn matches(&self, hostname: &str) -> bool {
        if self.subdomains {
            hostname.len() > self.host.len()
                && hostname.ends_with(&self.host)
                && hostname.as_bytes()[hostname.len() - self.host.len() - 1] == b'.'
        } else {
            hostname == self.host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> PathPattern {
        PathPattern::parse(p).unwrap()
    }

    #[test]
    fn path_wildcards() {
        let one = path("/blog/*");
        assert!(one.matches("/blog/post") && one.matches("/blog/"));
        assert!(!one.matches("/blog/a/b") && !one.matches("/blog") && !one.matches("/blogx/a"));
        let any = path("/admin/**");
        assert!(any.matches("/admin/") && any.matches("/admin/a/b/c"));
        assert!(!any.matches("/admin") && !any.matches("/administrator"));
        let mid = path("/**/edit");
        assert!(mid.matches("/posts/1/edit") && mid.matches("//edit"));
        assert!(!mid.matches("/posts/1/edit/x"));
        let inner = path("/shop/*/checkout*");
        assert!(inner.matches("/shop/de/checkout") && inner.matches("/shop/de/checkout-2"));
        assert!(!inner.matches("/shop/de/x/checkout"));
        assert!(path("/exact").matches("/exact") && !path("/exact").matches("/exact/"));
        assert_eq!(path("/a/***"), path("/a/**"));
    }

    #[test]
    fn path_matching_cost_is_bounded_on_hostile_input() {
        let p = path("/**a**a**a**a**a**b");
        let input = format!("/{}", "a".repeat(5000));
        let t = std::time::Instant::now();
        assert!(!p.matches(&input));
        assert!(t.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn path_pattern_errors() {
        assert!(PathPattern::parse("admin/**").is_err());
        assert!(PathPattern::parse(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("WWW.Example.com").unwrap();
        assert!(exact.matches("example.com") && !exact.matches("shop.example.com"));
        let sub = HostPattern::parse("*.example.com").unwrap();
        assert!(sub.matches("shop.example.com") && sub.matches("a.b.example.com"));
        assert!(!sub.matches("example.com") && !sub.matches("badexample.com"));
        assert!(HostPattern::parse("https://example.com").is_err());
        assert!(HostPattern::parse("example.com:8080").is_err());
    }
}
