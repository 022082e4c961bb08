//! Stage 2 — check: decide whether a parsed event is recorded, and reject what is malformed.
//!
//! An event is either invalid (the client gets a 400 saying why), deliberately not recorded
//! (202 with `x-glimpse-dropped: <reason>`), or accepted with its page URL, sites and browser
//! class resolved for the stages after this one.
//!
//! Order: the site's own shields first (their drops are reported as the owner's choice), then
//! prefetch, user agent, request headers, datacenter ranges and referrer spam. Country shields
//! need the location, so the pipeline applies them right after enrichment.

pub mod headers;
pub mod iprange;
pub mod shield;
pub mod spam;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config;
use crate::enrich::ua::{Client, UaCache};
use crate::enrich::url::{self, Page};
use crate::parse::Payload;

pub use headers::Signals;
pub use iprange::IpRanges;
pub use shield::Shield;
pub use spam::ReferrerSpam;

/// Why an event was not recorded. The string form is the `x-glimpse-dropped` header value, the
/// metrics label and the `reason` column of `dropped_daily`, so it never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    UnknownSite,
    NoUserAgent,
    NotABrowser,
    Headless,
    HttpClient,
    Crawler,
    /// A prefetch or prerender: nobody has seen the page (yet).
    Prefetch,
    /// A browser user agent on a request no browser would send that way.
    HeaderMismatch,
    ReferrerSpam,
    Datacenter,
    BlockedIp,
    BlockedCountry,
    ExcludedPath,
    HostnameNotAllowed,
    /// Plausible's tracker reports time on page as `engagement` events; they are not page views
    /// or custom events, so they are not stored as such.
    Engagement,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::UnknownSite,
        DropReason::NoUserAgent,
        DropReason::NotABrowser,
        DropReason::Headless,
        DropReason::HttpClient,
        DropReason::Crawler,
        DropReason::Prefetch,
        DropReason::HeaderMismatch,
        DropReason::ReferrerSpam,
        DropReason::Datacenter,
        DropReason::BlockedIp,
        DropReason::BlockedCountry,
        DropReason::ExcludedPath,
        DropReason::HostnameNotAllowed,
        DropReason::Engagement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSite => "unknown_site",
            DropReason::NoUserAgent => "no_user_agent",
            DropReason::NotABrowser => "not_a_browser",
            DropReason::Headless => "headless_browser",
            DropReason::HttpClient => "http_client",
            DropReason::Crawler => "crawler",
            DropReason::Prefetch => "prefetch",
            DropReason::HeaderMismatch => "header_mismatch",
            DropReason::ReferrerSpam => "referrer_spam",
            DropReason::Datacenter => "datacenter",
            DropReason::BlockedIp => "blocked_ip",
            DropReason::BlockedCountry => "blocked_country",
            DropReason::ExcludedPath => "excluded_path",
            DropReason::HostnameNotAllowed => "hostname_not_allowed",
            DropReason::Engagement => "engagement",
        }
    }

    /// Position in [`DropReason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed input: 400 with this message.
    Invalid(String),
    /// Well-formed but not recorded: 202 with the reason.
    Dropped(Dropped),
}

/// An event not recorded: the reason reported to the client, and the reason per matched site
/// (sites' shields can differ). `sites` is empty when no site matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub sites: Vec<(usize, DropReason)>,
}

impl Dropped {
    fn all(reason: DropReason, sites: &[&Site]) -> Dropped {
        Dropped {
            reason,
            sites: sites.iter().map(|s| (s.index, reason)).collect(),
        }
    }
}

/// A configured site, with its shields compiled.
#[derive(Debug)]
pub struct Site {
    /// Position in the configuration; keys per-site counters.
    pub index: usize,
    /// Lower-case host name without `www.`, as stored in the `site` column.
    pub domain: String,
    pub shield: Shield,
}

/// Who sent the request, as far as the checks need to know. Dropped after anonymisation.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'r> {
    pub ip: IpAddr,
    pub user_agent: &'r str,
    pub signals: Signals,
}

/// Everything `check` decides with, built once at start-up and never mutated.
#[derive(Debug, Default)]
pub struct Rules {
    sites: Vec<Site>,
    by_domain: HashMap<String, usize>,
    /// Empty when referrer-spam filtering is off.
    pub spam: ReferrerSpam,
    /// Empty unless a datacenter ranges file is configured.
    pub datacenters: IpRanges,
    /// Browser-consistency checks on request headers; off for server-side senders.
    pub header_checks: bool,
    user_agents: UaCache,
}

impl Rules {
    /// Sites only, with header checks on and no lists: what tests and benches mostly need.
    pub fn new(sites: &[config::Site]) -> Rules {
        Rules {
            sites: sites
                .iter()
                .enumerate()
                .map(|(index, s)| Site {
                    index,
                    domain: s.domain.clone(),
                    shield: Shield::new(&s.shields),
                })
                .collect(),
            by_domain: sites
                .iter()
                .enumerate()
                .map(|(i, s)| (s.domain.clone(), i))
                .collect(),
            spam: ReferrerSpam::default(),
            datacenters: IpRanges::default(),
            header_checks: true,
            user_agents: UaCache::default(),
        }
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    fn get(&self, domain: &str) -> Option<&Site> {
        self.by_domain.get(domain).map(|&i| &self.sites[i])
    }
}

/// An event that will be recorded, for one or more sites.
#[derive(Debug)]
pub struct Checked<'a, 's> {
    pub payload: Payload<'a>,
    pub page: Page<'a>,
    pub sites: Vec<&'s Site>,
    pub client: Arc<Client>,
    /// Sites whose shields refused this event while others accept it.
    pub shielded: Vec<(usize, DropReason)>,
}

pub fn check<'a, 's>(
    payload: Payload<'a>,
    sender: &Sender<'_>,
    rules: &'s Rules,
) -> Result<Checked<'a, 's>, Rejection> {
    // Lifetimes: the page borrows from the payload's URL, so parse it from a clone of that Cow;
    // in the common case (no escapes) it is a borrow of the request body and the clone is free.
    let page = match payload.url.clone() {
        Cow::Borrowed(u) => url::parse_page(u, payload.hash_mode),
        Cow::Owned(u) => url::parse_page(&u, payload.hash_mode).map(into_owned_page),
    }
    .map_err(|e| Rejection::Invalid(format!("`u`: {e}")))?;
    let drop = |d: Dropped| Err(Rejection::Dropped(d));
    if payload.name == "engagement" {
        return drop(Dropped::all(DropReason::Engagement, &[]));
    }

    let mut matched: Vec<&'s Site> = Vec::with_capacity(1);
    match payload.domain.as_deref() {
        Some(list) => {
            for d in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                if let Some(site) = rules.get(&url::normalize_host(d))
                    && !matched.iter().any(|m| m.index == site.index)
                {
                    matched.push(site);
                }
            }
        }
        None => matched.extend(rules.get(&page.hostname)),
    }
    if matched.is_empty() {
        return drop(Dropped::all(DropReason::UnknownSite, &[]));
    }

    // The site owners' own rules first, so their drops are reported as theirs.
    let mut shielded = Vec::new();
    matched.retain(
        |site| match site.shield.check(sender.ip, &page.hostname, &page.pathname) {
            Ok(()) => true,
            Err(reason) => {
                shielded.push((site.index, reason));
                false
            }
        },
    );
    if matched.is_empty() {
        return drop(Dropped {
            reason: shielded[0].1,
            sites: shielded,
        });
    }

    let refuse = |reason| Rejection::Dropped(Dropped::all(reason, &matched));
    if rules.header_checks && sender.signals.speculative {
        return Err(refuse(DropReason::Prefetch));
    }
    let client = rules
        .user_agents
        .classify(sender.user_agent)
        .map_err(refuse)?;
    if rules.header_checks && (!sender.signals.accept_language || sender.signals.navigation) {
        return Err(refuse(DropReason::HeaderMismatch));
    }
    if rules.datacenters.contains(sender.ip) {
        return Err(refuse(DropReason::Datacenter));
    }
    if !rules.spam.is_empty()
        && let Some(r) = payload.referrer.as_deref()
        && let Some(host) = url::referrer_host(r)
        && rules.spam.contains(&host)
    {
        return Err(refuse(DropReason::ReferrerSpam));
    }
    Ok(Checked {
        payload,
        page,
        sites: matched,
        client,
        shielded,
    })
}

fn into_owned_page(p: Page<'_>) -> Page<'static> {
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    Page {
        hostname: own(p.hostname),
        pathname: own(p.pathname),
        utm: url::Utm {
            source: own(p.utm.source),
            medium: own(p.utm.medium),
            campaign: own(p.utm.campaign),
            content: own(p.utm.content),
            term: own(p.utm.term),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shields;
    use crate::parse::parse_json;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    fn rules() -> Rules {
        let shielded = config::Site {
            domain: "b.org".into(),
            shields: Shields {
                block_ips: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                block_countries: vec!["XX".into()],
                exclude_paths: vec!["/admin/**".into()],
                allow_hostnames: vec!["b.org".into(), "*.b.org".into(), "x.net".into()],
            },
        };
        let mut r = Rules::new(&[config::Site::new("a.com"), shielded]);
        r.spam = ReferrerSpam::from_text("semalt.com\n");
        r.datacenters = IpRanges::parse("203.0.113.0/24").unwrap();
        r
    }

    fn sender(ua: &str) -> Sender<'_> {
        Sender {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: ua,
            signals: Signals::browser(),
        }
    }

    fn run_with(body: &str, s: &Sender<'_>) -> Result<Vec<String>, Rejection> {
        let r = rules();
        let p = parse_json(body.as_bytes()).unwrap();
        check(p, s, &r).map(|c| c.sites.iter().map(|s| s.domain.clone()).collect())
    }

    fn run(body: &str, ua: &str) -> Result<Vec<String>, Rejection> {
        run_with(body, &sender(ua))
    }

    fn reason(r: Result<Vec<String>, Rejection>) -> Option<DropReason> {
        match r {
            Err(Rejection::Dropped(d)) => Some(d.reason),
            _ => None,
        }
    }

    #[test]
    fn site_from_domain_list_or_url_host() {
        assert_eq!(
            run(r#"{"n":"pageview","u":"https://www.a.com/x"}"#, UA).unwrap(),
            ["a.com"]
        );
        assert_eq!(
            run(
                r#"{"n":"pageview","u":"https://x.net/","d":"a.com, B.org,c.io,a.com"}"#,
                UA
            )
            .unwrap(),
            ["a.com", "b.org"]
        );
    }

    #[test]
    fn unknown_site_and_bots_are_dropped_with_reason() {
        assert_eq!(
            run(r#"{"n":"pageview","u":"https://evil.com/"}"#, UA),
            Err(Rejection::Dropped(Dropped {
                reason: DropReason::UnknownSite,
                sites: vec![]
            }))
        );
        assert_eq!(
            run(
                r#"{"n":"pageview","u":"https://x.net/","d":"a.com,b.org"}"#,
                "curl/8.0.1"
            ),
            Err(Rejection::Dropped(Dropped {
                reason: DropReason::HttpClient,
                sites: vec![(0, DropReason::HttpClient), (1, DropReason::HttpClient)]
            }))
        );
    }

    #[test]
    fn header_checks() {
        let body = r#"{"n":"pageview","u":"https://a.com/"}"#;
        let mut s = sender(UA);
        s.signals.accept_language = false;
        assert_eq!(reason(run_with(body, &s)), Some(DropReason::HeaderMismatch));
        s.signals = Signals {
            navigation: true,
            ..Signals::browser()
        };
        assert_eq!(reason(run_with(body, &s)), Some(DropReason::HeaderMismatch));
        s.signals = Signals {
            speculative: true,
            ..Signals::browser()
        };
        assert_eq!(reason(run_with(body, &s)), Some(DropReason::Prefetch));
        // Switched off for server-side senders.
        let mut r = rules();
        r.header_checks = false;
        s.signals = Signals::default();
        let p = parse_json(body.as_bytes()).unwrap();
        assert!(check(p, &s, &r).is_ok());
    }

    #[test]
    fn datacenter_and_referrer_spam() {
        let mut s = sender(UA);
        s.ip = "203.0.113.9".parse().unwrap();
        assert_eq!(
            reason(run_with(r#"{"n":"pageview","u":"https://a.com/"}"#, &s)),
            Some(DropReason::Datacenter)
        );
        for r in [
            "https://semalt.com/x",
            "http://WWW.Semalt.com",
            "https://a.b.semalt.com/",
        ] {
            let body = format!(r#"{{"n":"pageview","u":"https://a.com/","r":"{r}"}}"#);
            assert_eq!(
                reason(run(&body, UA)),
                Some(DropReason::ReferrerSpam),
                "{r}"
            );
        }
        let fine = r#"{"n":"pageview","u":"https://a.com/","r":"https://notsemalt.com/"}"#;
        assert!(run(fine, UA).is_ok());
    }

    #[test]
    fn shields_apply_per_site() {
        let both = |url: &str| format!(r#"{{"n":"pageview","u":"{url}","d":"a.com,b.org"}}"#);
        let r = rules();
        let body = both("https://b.org/admin/users");
        let p = parse_json(body.as_bytes()).unwrap();
        let c = check(p, &sender(UA), &r).unwrap();
        assert_eq!(c.sites.len(), 1, "a.com still counts it");
        assert_eq!(c.shielded, vec![(1, DropReason::ExcludedPath)]);

        let only_b = |url: &str| format!(r#"{{"n":"pageview","u":"{url}","d":"b.org"}}"#);
        assert_eq!(
            reason(run(&only_b("https://b.org/admin/"), UA)),
            Some(DropReason::ExcludedPath)
        );
        assert_eq!(
            reason(run(&only_b("https://staging.example.com/"), UA)),
            Some(DropReason::HostnameNotAllowed)
        );
        assert!(run(&only_b("https://shop.b.org/"), UA).is_ok());
        assert!(run(&only_b("https://x.net/"), UA).is_ok());
        let mut s = sender(UA);
        for ip in ["10.1.2.3", "2001:db8::7"] {
            s.ip = ip.parse().unwrap();
            assert_eq!(
                reason(run_with(&only_b("https://b.org/"), &s)),
                Some(DropReason::BlockedIp)
            );
        }
        // The shield is b.org's alone.
        assert!(run_with(r#"{"n":"pageview","u":"https://a.com/"}"#, &s).is_ok());
    }

    #[test]
    fn bad_url_is_invalid() {
        assert!(
            matches!(run(r#"{"n":"pageview","u":"/relative","d":"a.com"}"#, UA), Err(Rejection::Invalid(m)) if m.contains("`u`"))
        );
    }

    #[test]
    fn reasons_have_stable_distinct_names_and_indexes() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
