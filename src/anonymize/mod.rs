//! Stage 4 — anonymize: the raw IP address and user agent are used one last time, to compute the
//! visitor id, and then left behind. What leaves this stage is an encoded [`Event`] row.

pub mod salt;

use std::net::IpAddr;

use crate::enrich::Enriched;
use crate::event::{Event, VisitStep};
use crate::visits::Visits;

pub use salt::{Salt, SaltSet, Salts, visitor_id};

/// Encodes one row per site of the event into `out`, each with its visit step; returns how many
/// rows were written.
pub fn encode_rows(
    e: &Enriched<'_, '_, '_>,
    salt: &Salt,
    ip: IpAddr,
    user_agent: &str,
    timestamp: u32,
    visits: &Visits,
    out: &mut Vec<u8>,
) -> usize {
    let c = &e.checked;
    let p = &c.payload;
    let user_agent = crate::enrich::url::truncate(user_agent.trim(), crate::enrich::ua::MAX_UA_LEN);
    let (revenue_micros, currency_bytes) = match &p.revenue {
        Some(r) => (r.micros, r.currency),
        None => (0, [0; 3]),
    };
    let currency = if p.revenue.is_some() {
        std::str::from_utf8(&currency_bytes).unwrap_or("")
    } else {
        ""
    };
    let pageview = p.name == "pageview";
    for site in &c.sites {
        let site = site.domain.as_str();
        let visitor = visitor_id(salt, site, ip, user_agent);
        let step = visits.step(
            visitor,
            timestamp,
            pageview,
            p.interactive,
            &c.page.pathname,
        );
        Event {
            timestamp,
            site,
            name: &p.name,
            hostname: &c.page.hostname,
            pathname: &c.page.pathname,
            referrer: &e.referrer,
            referrer_source: &e.referrer_source,
            utm_source: &c.page.utm.source,
            utm_medium: &c.page.utm.medium,
            utm_campaign: &c.page.utm.campaign,
            utm_content: &c.page.utm.content,
            utm_term: &c.page.utm.term,
            country_code: e.location.country_code,
            region: e.location.region,
            browser: &c.client.browser,
            browser_version: &c.client.browser_version,
            os: &c.client.os,
            os_version: &c.client.os_version,
            device: c.client.device.as_str(),
            visitor_id: visitor,
            interactive: p.interactive,
            revenue_micros,
            revenue_currency: currency,
            props: &p.props,
            visit: VisitStep {
                entry: step.entry,
                seconds: step.seconds,
                bounce: step.bounce,
                exit_prev: step.exit_prev.as_deref().unwrap_or(""),
            },
        }
        .encode(out);
    }
    c.sites.len()
}
