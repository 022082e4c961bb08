//! Stage 3 — enrich: add what the stored row needs beyond the payload: coarse location, referrer
//! host/path and the traffic source. The browser class and page URL were resolved by `check`.

pub mod geo;
pub mod ua;
pub mod url;

use std::borrow::Cow;
use std::net::IpAddr;

use crate::check::Checked;

pub use geo::{Geo, Location};

#[derive(Debug)]
pub struct Enriched<'a, 's, 'g> {
    pub checked: Checked<'a, 's>,
    pub location: Location<'g>,
    /// `host/path` of an external referrer, empty when direct or same-site.
    pub referrer: Cow<'a, str>,
    /// utm_source when present, else the referrer host.
    pub referrer_source: Cow<'a, str>,
}

pub fn enrich<'a, 's, 'g>(
    checked: Checked<'a, 's>,
    ip: IpAddr,
    geo: &'g Geo,
) -> Enriched<'a, 's, 'g> {
    let location = geo.lookup(ip);
    let referrer_raw: Option<&'a str> = match &checked.payload.referrer {
        Some(Cow::Borrowed(r)) => Some(r),
        _ => None,
    };
    // A referrer with escapes was copied during parsing; normalise that copy into owned strings.
    let (ref_host, referrer) = match (referrer_raw, &checked.payload.referrer) {
        (Some(r), _) => {
            url::normalize_referrer(Some(r), &checked.page.hostname).unwrap_or_default()
        }
        (None, Some(owned)) => url::normalize_referrer(Some(owned), &checked.page.hostname)
            .map(|(h, f)| (Cow::Owned(h.into_owned()), Cow::Owned(f.into_owned())))
            .unwrap_or_default(),
        (None, None) => Default::default(),
    };
    let referrer_source = if checked.page.utm.source.is_empty() {
        ref_host
    } else {
        checked.page.utm.source.clone()
    };
    Enriched {
        checked,
        location,
        referrer,
        referrer_source,
    }
}
