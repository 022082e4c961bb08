//! Classify: what the request says, in the classes that are stored. The page URL becomes host,
//! path and UTM fields; the referrer becomes `host/path` and a traffic source; the user agent
//! becomes a browser class (or the reason it is not a person's browser); the address becomes a
//! country and region. Nothing is decided here: the filter stage decides with these classes.

pub mod geo;
pub mod ua;
pub mod url;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{BrowserClass, DropReason};
use crate::parse::Payload;

pub use geo::{Geo, Location};
pub use ua::UaCache;
pub use url::Page;

/// What classification needs beyond the request: the geo databases and the user-agent cache.
pub struct Classifier {
    pub geo: Geo,
    user_agents: UaCache,
}

/// An event in stored classes. The raw address and user agent are not part of it.
#[derive(Debug)]
pub struct Classified<'a, 'g> {
    pub payload: Payload<'a>,
    pub page: Page<'a>,
    /// The browser class, or why the user agent is not a person's browser.
    pub browser: Result<Arc<BrowserClass>, DropReason>,
    pub location: Location<'g>,
    /// `host/path` of an external referrer, empty when direct or same-site.
    pub referrer: Cow<'a, str>,
    /// utm_source when present, else the referrer host.
    pub referrer_source: Cow<'a, str>,
}

impl Classifier {
    pub fn new(geo: Geo) -> Classifier {
        Classifier {
            geo,
            user_agents: UaCache::default(),
        }
    }

    /// Classifies one event; the error is the client's mistake, for a 400.
    pub fn classify<'a, 'g>(
        &'g self,
        payload: Payload<'a>,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Classified<'a, 'g>, String> {
        let page = page(&payload).map_err(|e| format!("`u`: {e}"))?;
        let (ref_host, referrer) = referrer(&payload, &page.hostname);
        let referrer_source = if page.utm.source.is_empty() {
            ref_host
        } else {
            page.utm.source.clone()
        };
        Ok(Classified {
            browser: self.user_agents.classify(user_agent),
            location: self.geo.lookup(ip),
            payload,
            page,
            referrer,
            referrer_source,
        })
    }
}

/// The page, borrowing from the payload's URL. The URL is a borrow of the request body unless
/// it had JSON escapes; then the page is built from (and owns) a copy.
fn page<'a>(payload: &Payload<'a>) -> Result<Page<'a>, url::UrlError> {
    match &payload.url {
        Cow::Borrowed(u) => url::parse_page(u, payload.hash_mode),
        Cow::Owned(u) => url::parse_page(u, payload.hash_mode).map(url::Page::into_owned),
    }
}

/// The normalised referrer host and `host/path`, empty when direct or same-site.
fn referrer<'a>(payload: &Payload<'a>, page_host: &str) -> (Cow<'a, str>, Cow<'a, str>) {
    match &payload.referrer {
        Some(Cow::Borrowed(r)) => url::normalize_referrer(Some(*r), page_host).unwrap_or_default(),
        // A referrer with escapes was copied during parsing; normalise that copy into owned
        // strings.
        Some(Cow::Owned(owned)) => url::normalize_referrer(Some(owned), page_host)
            .map(|(h, f)| (Cow::Owned(h.into_owned()), Cow::Owned(f.into_owned())))
            .unwrap_or_default(),
        None => Default::default(),
    }
}
