//! What the request headers say about the sender, reduced to the few facts the checks use.
//! Browsers send these headers on every `fetch`, `sendBeacon` and image request; tools and
//! scripts that copy a browser's user agent usually do not.

use http::HeaderMap;

/// Facts read from the request headers. `Default` is "nothing known", which no check rejects
/// except the missing `Accept-Language` one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    pub accept_language: bool,
    /// `Purpose`/`Sec-Purpose`/`X-Moz`/`X-Purpose` say prefetch or prerender: the page was
    /// loaded speculatively, nobody has seen it yet.
    pub speculative: bool,
    /// `Sec-Fetch-*` describe a top-level navigation or a document load, which a beacon request
    /// never is.
    pub navigation: bool,
}

impl Signals {
    pub fn from_headers(h: &HeaderMap) -> Signals {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let speculative = ["purpose", "sec-purpose", "x-moz", "x-purpose"]
            .iter()
            .any(|name| {
                let v = get(name).to_ascii_lowercase();
                v.contains("prefetch") || v.contains("prerender") || v.contains("preview")
            });
        let mode = get("sec-fetch-mode");
        let dest = get("sec-fetch-dest");
        let navigation = mode.eq_ignore_ascii_case("navigate")
            || ["document", "iframe", "frame", "embed", "object"]
                .iter()
                .any(|d| dest.eq_ignore_ascii_case(d))
            || h.contains_key("sec-fetch-user");
        Signals {
            accept_language: h
                .get(http::header::ACCEPT_LANGUAGE)
                .is_some_and(|v| !v.is_empty()),
            speculative,
            navigation,
        }
    }

    /// What a real browser's beacon request looks like; for callers without headers (tests,
    /// benches, replays).
    pub fn browser() -> Signals {
        Signals {
            accept_language: true,
            ..Signals::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(pairs: &[(&'static str, &'static str)]) -> Signals {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        Signals::from_headers(&h)
    }

    #[test]
    fn beacon_requests_look_normal() {
        let s = signals(&[
            ("accept-language", "de-DE,de;q=0.9"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "empty"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(s, Signals::browser());
        let img = signals(&[("accept-language", "en"), ("sec-fetch-dest", "image")]);
        assert_eq!(img, Signals::browser());
    }

    #[test]
    fn prefetch_and_navigation_are_flagged() {
        assert!(signals(&[("sec-purpose", "prefetch;prerender")]).speculative);
        assert!(signals(&[("purpose", "prefetch")]).speculative);
        assert!(signals(&[("x-moz", "prefetch")]).speculative);
        assert!(signals(&[("sec-fetch-mode", "navigate")]).navigation);
        assert!(signals(&[("sec-fetch-dest", "document")]).navigation);
        assert!(signals(&[("sec-fetch-user", "?1")]).navigation);
        assert!(!signals(&[]).accept_language);
    }
}
