//! A configured site and its shields: addresses, countries, pages and host names whose events
//! the site's owner does not want counted (their own office, a staging host, `/admin/**`).
//! Everything here is compiled once, when the configuration is read.

use std::net::IpAddr;

use super::drop::DropReason;
use super::net::IpRanges;
use super::text;

/// Longest accepted pattern; keeps matching cost bounded.
pub(crate) const MAX_PATTERN_LEN: usize = 200;

/// A site events are recorded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Lower-case host name without `www.`, as events are matched against it and as stored in
    /// the `site` column.
    pub domain: String,
    pub shields: Shields,
    /// Long opaque tokens in page and referrer paths are stored as `(token)` (on by default).
    pub redact_tokens: bool,
    /// What counts as a conversion; asked of stored data, so a new goal covers the past too.
    pub goals: Vec<Goal>,
}

/// A goal: a custom event, a visit to matching pages, or scrolling that far down them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    /// As shown and asked for (`event:goal`): "Signup", "Visit /pricing/**",
    /// "Scroll 75% /blog/*", or the configured name.
    pub name: String,
    pub kind: GoalKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalKind {
    Event(String),
    /// A page pattern: `*` one path segment, `**` anything.
    Page(String),
    Scroll {
        page: String,
        percent: u8,
    },
}

impl Site {
    /// A site without shields, with the defaults; `domain` must already be normal (see
    /// [`text::host_name`]).
    pub fn new(domain: &str) -> Site {
        Site {
            domain: domain.to_string(),
            shields: Shields::default(),
            redact_tokens: true,
            goals: Vec::new(),
        }
    }
}

/// A site's own exclusions, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shields {
    pub block_ips: IpRanges,
    /// Upper-case ISO 3166-1 alpha-2 codes.
    pub block_countries: Vec<String>,
    pub exclude_paths: Vec<PathPattern>,
    pub allow_hostnames: Vec<HostPattern>,
}

impl Shields {
    /// Why this site does not count an event from `ip` on `hostname`/`pathname`, if it does
    /// not. Country blocks are separate ([`Shields::blocks_country`]): the filter decides them
    /// last, so a bot from a blocked country is still reported as a bot.
    pub fn refuses(&self, ip: IpAddr, hostname: &str, pathname: &str) -> Option<DropReason> {
        if self.block_ips.contains(ip) {
            return Some(DropReason::BlockedIp);
        }
        if !self.allow_hostnames.is_empty()
            && !self.allow_hostnames.iter().any(|h| h.matches(hostname))
        {
            return Some(DropReason::HostnameNotAllowed);
        }
        if self.exclude_paths.iter().any(|p| p.matches(pathname)) {
            return Some(DropReason::ExcludedPath);
        }
        None
    }

    /// Whether events located in this country are not counted.
    pub(crate) fn blocks_country(&self, country_code: &str) -> bool {
        !country_code.is_empty()
            && self
                .block_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country_code))
    }
}

/// An upper-case ISO 3166-1 alpha-2 code, or an error naming the input.
pub fn country_code(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(format!(
            "{raw:?} is not a two-letter country code like \"DE\""
        ))
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
#[derive(Debug, Clone)]
pub struct PathPattern {
    tokens: Vec<Token>,
    /// As configured, for messages and comparisons with the configuration.
    text: Box<str>,
}

/// Patterns are equal when they match the same paths (`/a/***` is `/a/**`).
impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens
    }
}

impl Eq for PathPattern {}

impl PartialEq<&str> for PathPattern {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
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
        Ok(PathPattern {
            tokens,
            text: p.into(),
        })
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
#[derive(Debug, Clone)]
pub struct HostPattern {
    host: String,
    subdomains: bool,
    /// As configured.
    text: Box<str>,
}

impl PartialEq for HostPattern {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, self.subdomains) == (&other.host, other.subdomains)
    }
}

impl Eq for HostPattern {}

impl PartialEq<&str> for HostPattern {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

impl HostPattern {
    pub fn parse(h: &str) -> Result<HostPattern, String> {
        let trimmed = h.trim();
        let (subdomains, rest) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let host = text::host_name(rest).ok_or_else(|| {
            format!("{h:?} is not a host name or *.host pattern (no scheme, path or port)")
        })?;
        Ok(HostPattern {
            host,
            subdomains,
            text: h.into(),
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
