//! Filter: every decision whether a classified event is recorded, and for which sites.
//!
//! An event is either recorded, for one or more sites, or deliberately not recorded (202 with
//! `x-glimpse-dropped: <reason>`), with the reason per matched site for the drop counts.
//!
//! Order: the site, each site's own shields (their drops are reported as
//! the owner's choice), then prefetch, user agent, request headers, datacenter ranges, referrer
//! spam, and last the sites' country shields.

pub mod headers;
pub mod spam;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::classify::{Classified, url};
use crate::model::{BrowserClass, DropReason, IpRanges, Site};
use crate::settings::Reader;

pub use headers::Signals;
pub use spam::ReferrerSpam;

/// The `[filter]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Browser-consistency checks on request headers (see [`Signals::mismatch`]).
    pub header_checks: bool,
    /// Also require the headers every browser sends, refusing server-side integrations.
    pub browser_only: bool,
    pub referrer_spam: bool,
    /// File of datacenter/hosting CIDRs whose traffic is dropped; `None`: no such filter.
    pub datacenter_ranges: Option<PathBuf>,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            header_checks: r.boolean("filter.header_checks", true),
            browser_only: r.boolean("filter.browser_only", false),
            referrer_spam: r.boolean("filter.referrer_spam", true),
            datacenter_ranges: r.path("filter.datacenter_ranges"),
        }
    }
}

/// An event not recorded: the reason reported to the client, and the reason per matched site
/// (sites' shields can differ), by the site's position. `sites` is empty when no site matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub sites: Vec<(usize, DropReason)>,
}

impl Dropped {
    fn all(reason: DropReason, sites: &[(usize, &Site)]) -> Dropped {
        Dropped {
            reason,
            sites: sites.iter().map(|(i, _)| (*i, reason)).collect(),
        }
    }
}

/// Everything the filter decides with, built once at start-up and never mutated.
#[derive(Debug, Default)]
pub struct Rules {
    sites: Vec<Site>,
    by_domain: HashMap<String, usize>,
    /// Empty when referrer-spam filtering is off.
    pub spam: ReferrerSpam,
    /// Empty unless a datacenter ranges file is configured.
    pub datacenters: IpRanges,
    /// Browser-consistency checks on request headers.
    pub header_checks: bool,
    /// Refuse requests without the headers every browser sends (server-side integrations).
    pub browser_only: bool,
}

impl Rules {
    /// Sites only, with header checks on and no lists: what tests and benches mostly need.
    pub fn new(sites: &[Site]) -> Rules {
        Rules {
            sites: sites.to_vec(),
            by_domain: sites
                .iter()
                .enumerate()
                .map(|(i, s)| (s.domain.clone(), i))
                .collect(),
            spam: ReferrerSpam::default(),
            datacenters: IpRanges::default(),
            header_checks: true,
            browser_only: false,
        }
    }

    /// The rules of the configuration; reads the datacenter ranges file if one is set. The
    /// error names the file and the problem.
    pub fn configured(sites: &[Site], settings: &Settings) -> Result<Rules, String> {
        let mut rules = Rules::new(sites);
        rules.header_checks = settings.header_checks;
        rules.browser_only = settings.browser_only;
        if settings.referrer_spam {
            rules.spam = ReferrerSpam::bundled();
        }
        if let Some(path) = &settings.datacenter_ranges {
            let fail =
                |reason: String| format!("datacenter ranges file {}: {reason}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            rules.datacenters = IpRanges::parse(&text).map_err(fail)?;
            tracing::info!(
                ranges = rules.datacenters.len(),
                "datacenter ranges loaded: their traffic is dropped"
            );
        }
        Ok(rules)
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    fn get(&self, domain: &str) -> Option<(usize, &Site)> {
        self.by_domain.get(domain).map(|&i| (i, &self.sites[i]))
    }
}

/// An event that will be recorded, for one or more sites.
#[derive(Debug)]
pub struct Accepted<'a, 'g, 's> {
    pub event: Classified<'a, 'g>,
    pub browser: Arc<BrowserClass>,
    /// The sites that record it, with their positions.
    pub sites: Vec<(usize, &'s Site)>,
    /// Sites whose shields refused this event while others accept it.
    pub shielded: Vec<(usize, DropReason)>,
}

/// Decides whether `event`, sent from `ip` with these header `signals`, is recorded.
pub fn filter<'a, 'g, 's>(
    event: Classified<'a, 'g>,
    ip: IpAddr,
    signals: Signals,
    rules: &'s Rules,
) -> Result<Accepted<'a, 'g, 's>, Dropped> {
    let mut matched: Vec<(usize, &'s Site)> = Vec::with_capacity(1);
    match event.payload.domain.as_deref() {
        Some(list) => {
            for d in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                if let Some(site) = rules.get(&url::normalize_host(d))
                    && !matched.iter().any(|m| m.0 == site.0)
                {
                    matched.push(site);
                }
            }
        }
        None => matched.extend(rules.get(&event.page.hostname)),
    }
    if matched.is_empty() {
        return Err(Dropped::all(DropReason::UnknownSite, &[]));
    }

    // The site owners' own rules first, so their drops are reported as theirs.
    let mut shielded = Vec::new();
    matched.retain(|(i, site)| {
        match site
            .shields
            .refuses(ip, &event.page.hostname, &event.page.pathname)
        {
            None => true,
            Some(reason) => {
                shielded.push((*i, reason));
                false
            }
        }
    });
    if matched.is_empty() {
        return Err(Dropped {
            reason: shielded[0].1,
            sites: shielded,
        });
    }

    let refuse = |reason| Dropped::all(reason, &matched);
    if rules.header_checks && signals.speculative {
        return Err(refuse(DropReason::Prefetch));
    }
    let browser = event.browser.clone().map_err(refuse)?;
    if rules.header_checks && signals.mismatch(rules.browser_only) {
        return Err(refuse(DropReason::HeaderMismatch));
    }
    if rules.datacenters.contains(ip) {
        return Err(refuse(DropReason::Datacenter));
    }
    if !rules.spam.is_empty()
        && let Some(r) = event.payload.referrer.as_deref()
        && let Some(host) = url::referrer_host(r)
        && rules.spam.contains(&host)
    {
        return Err(refuse(DropReason::ReferrerSpam));
    }

    // Country shields need the location, so they come last.
    let country = event.location.country_code;
    matched.retain(|(i, site)| {
        let blocked = site.shields.blocks_country(country);
        if blocked {
            shielded.push((*i, DropReason::BlockedCountry));
        }
        !blocked
    });
    if matched.is_empty() {
        return Err(Dropped {
            reason: DropReason::BlockedCountry,
            sites: shielded,
        });
    }
    Ok(Accepted {
        event,
        browser,
        sites: matched,
        shielded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Geo};
    use crate::model::{HostPattern, PathPattern, Shields};
    use crate::parse::{Payload, parse_json};

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    fn rules() -> Rules {
        let shielded = Site {
            domain: "b.org".into(),
            shields: Shields {
                block_ips: IpRanges::parse("10.0.0.0/8\n2001:db8::/32").unwrap(),
                block_countries: vec!["XX".into()],
                exclude_paths: vec![PathPattern::parse("/admin/**").unwrap()],
                allow_hostnames: ["b.org", "*.b.org", "x.net"]
                    .iter()
                    .map(|h| HostPattern::parse(h).unwrap())
                    .collect(),
            },
            redact_tokens: true,
            goals: Vec::new(),
        };
        let mut r = Rules::new(&[Site::new("a.com"), shielded]);
        r.spam = ReferrerSpam::from_text("semalt.com\n");
        r.datacenters = IpRanges::parse("203.0.113.0/24").unwrap();
        r
    }

    /// Who sent the request, as classification and the filter see it.
    struct Origin<'a> {
        ip: IpAddr,
        user_agent: &'a str,
        signals: Signals,
    }

    /// The two ways an event is not recorded: malformed (classification) or dropped (filter).
    #[derive(Debug, PartialEq)]
    enum Rejection {
        Invalid(String),
        Dropped(Dropped),
    }

    #[derive(Debug)]
    struct Decided {
        sites: Vec<String>,
        shielded: Vec<(usize, DropReason)>,
    }

    /// Classifies (without a geo database) and filters.
    fn check(p: Payload<'_>, s: &Origin<'_>, r: &Rules) -> Result<Decided, Rejection> {
        let classifier = Classifier::new(Geo::empty());
        let event = classifier
            .classify(p, s.ip, s.user_agent)
            .map_err(Rejection::Invalid)?;
        let a = filter(event, s.ip, s.signals, r).map_err(Rejection::Dropped)?;
        Ok(Decided {
            sites: a.sites.iter().map(|(_, s)| s.domain.clone()).collect(),
            shielded: a.shielded,
        })
    }

    fn origin(ua: &str) -> Origin<'_> {
        Origin {
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: ua,
            signals: Signals::browser(),
        }
    }

    fn run_with(body: &str, s: &Origin<'_>) -> Result<Vec<String>, Rejection> {
        let r = rules();
        let p = parse_json(body.as_bytes()).unwrap();
        check(p, s, &r).map(|c| c.sites)
    }

    fn run(body: &str, ua: &str) -> Result<Vec<String>, Rejection> {
        run_with(body, &origin(ua))
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
        let mut s = origin(UA);
        s.signals.accept_language = false;
        assert_eq!(reason(run_with(body, &s)), Some(DropReason::HeaderMismatch));
        // A server-side sender: no browser headers at all.
        s.signals = Signals::default();
        assert_eq!(reason(run_with(body, &s)), None);
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
        let mut s = origin(UA);
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
        let c = check(p, &origin(UA), &r).unwrap();
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
        let mut s = origin(UA);
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
}
