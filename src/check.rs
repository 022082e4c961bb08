//! Stage 2 — check: decide whether a parsed event is recorded, and reject what is malformed.
//!
//! An event is either invalid (the client gets a 400 saying why), deliberately not recorded
//! (202 with `x-glimpse-dropped: <reason>`), or accepted with its page URL, sites and browser
//! class resolved for the stages after this one.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::config::Site;
use crate::enrich::ua::{self, Client};
use crate::enrich::url::{self, Page};
use crate::parse::Payload;

/// Why an event was not recorded. The string form is the `x-glimpse-dropped` header value and the
/// metrics label, so it never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    UnknownSite,
    NoUserAgent,
    NotABrowser,
    Headless,
    HttpClient,
    Crawler,
    /// Plausible's tracker reports time on page as `engagement` events; they are not page views
    /// or custom events, so they are not stored as such.
    Engagement,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::UnknownSite,
        DropReason::NoUserAgent,
        DropReason::NotABrowser,
        DropReason::Headless,
        DropReason::HttpClient,
        DropReason::Crawler,
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
            DropReason::Engagement => "engagement",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed input: 400 with this message.
    Invalid(String),
    /// Well-formed but not recorded: 202 with the reason.
    Dropped(DropReason),
}

/// The configured sites, looked up by normalised domain.
#[derive(Debug, Default)]
pub struct Sites {
    domains: HashSet<String>,
}

impl Sites {
    pub fn new(sites: &[Site]) -> Sites {
        Sites {
            domains: sites.iter().map(|s| s.domain.clone()).collect(),
        }
    }

    fn get(&self, domain: &str) -> Option<&str> {
        self.domains.get(domain).map(String::as_str)
    }
}

/// An event that will be recorded, for one or more sites.
#[derive(Debug)]
pub struct Checked<'a, 's> {
    pub payload: Payload<'a>,
    pub page: Page<'a>,
    pub sites: Vec<&'s str>,
    pub client: Client,
}

pub fn check<'a, 's>(
    payload: Payload<'a>,
    user_agent: &str,
    sites: &'s Sites,
) -> Result<Checked<'a, 's>, Rejection> {
    // Lifetimes: the page borrows from the payload's URL, so parse it from a clone of that Cow;
    // in the common case (no escapes) it is a borrow of the request body and the clone is free.
    let page = match payload.url.clone() {
        Cow::Borrowed(u) => url::parse_page(u, payload.hash_mode),
        Cow::Owned(u) => url::parse_page(&u, payload.hash_mode).map(into_owned_page),
    }
    .map_err(|e| Rejection::Invalid(format!("`u`: {e}")))?;
    if payload.name == "engagement" {
        return Err(Rejection::Dropped(DropReason::Engagement));
    }

    let mut matched: Vec<&'s str> = Vec::with_capacity(1);
    match payload.domain.as_deref() {
        Some(list) => {
            for d in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                if let Some(site) = sites.get(&url::normalize_host(d))
                    && !matched.contains(&site)
                {
                    matched.push(site);
                }
            }
        }
        None => matched.extend(sites.get(&page.hostname)),
    }
    if matched.is_empty() {
        return Err(Rejection::Dropped(DropReason::UnknownSite));
    }
    let client = ua::classify(user_agent).map_err(Rejection::Dropped)?;
    Ok(Checked {
        payload,
        page,
        sites: matched,
        client,
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
    use crate::parse::parse_json;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    fn sites() -> Sites {
        Sites::new(&[
            Site {
                domain: "a.com".into(),
            },
            Site {
                domain: "b.org".into(),
            },
        ])
    }

    fn run(body: &str, ua: &str) -> Result<Vec<String>, Rejection> {
        let s = sites();
        let p = parse_json(body.as_bytes()).unwrap();
        check(p, ua, &s).map(|c| c.sites.iter().map(|s| s.to_string()).collect())
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
            Err(Rejection::Dropped(DropReason::UnknownSite))
        );
        assert_eq!(
            run(
                r#"{"n":"pageview","u":"https://a.com/"}"#,
                "curl/8.0.1 (x86_64)"
            ),
            Err(Rejection::Dropped(DropReason::HttpClient))
        );
    }

    #[test]
    fn bad_url_is_invalid() {
        assert!(
            matches!(run(r#"{"n":"pageview","u":"/relative","d":"a.com"}"#, UA), Err(Rejection::Invalid(m)) if m.contains("`u`"))
        );
    }

    #[test]
    fn reasons_have_stable_distinct_names() {
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
