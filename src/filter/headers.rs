//! What the request headers say about the sender, reduced to the few facts the checks use.
//! Browsers send these headers on every `fetch`, `sendBeacon` and image request. Server-side
//! integrations and event proxies send only a user agent, `X-Forwarded-For` and a content type,
//! and so do scripts that copy a browser's user agent: the missing headers cannot tell those
//! two apart, so only what is *inconsistent* for a browser is held against a request.

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
    /// Any `Sec-Fetch-*` header: the request says it comes from a modern browser, which then
    /// also sends `Accept-Language`.
    pub fetch_metadata: bool,
}

impl Signals {
    /// One pass over the headers: names arrive lowercase, and this runs on every event, where
    /// a lookup by string name would parse the name again for each of the eight asked about.
    pub(crate) fn from_headers(h: &HeaderMap) -> Signals {
        let mut s = Signals::default();
        for (name, value) in h {
            let name = name.as_str();
            let value = value.as_bytes();
            match name {
                "accept-language" => s.accept_language |= !value.is_empty(),
                "purpose" | "sec-purpose" | "x-moz" | "x-purpose" => {
                    s.speculative |= ["prefetch", "prerender", "preview"]
                        .iter()
                        .any(|word| contains_ignore_case(value, word.as_bytes()));
                }
                _ => {}
            }
            if let Some(field) = name.strip_prefix("sec-fetch-") {
                s.fetch_metadata = true;
                s.navigation |= match field {
                    "mode" => value.eq_ignore_ascii_case(b"navigate"),
                    "dest" => ["document", "iframe", "frame", "embed", "object"]
                        .iter()
                        .any(|d| value.eq_ignore_ascii_case(d.as_bytes())),
                    "user" => true,
                    _ => false,
                };
            }
        }
        s
    }

    /// What a real browser's beacon request looks like; for callers without headers (tests,
    /// benches, replays).
    pub fn browser() -> Signals {
        Signals {
            accept_language: true,
            fetch_metadata: true,
            ..Signals::default()
        }
    }

    /// Whether these headers contradict a browser's: a navigation (a beacon request never is
    /// one), fetch metadata without `Accept-Language` (browsers send both), or, when
    /// `browser_only`, no `Accept-Language` at all (server-side senders are then refused).
    pub(crate) fn mismatch(&self, browser_only: bool) -> bool {
        self.navigation || (!self.accept_language && (self.fetch_metadata || browser_only))
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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
        assert!(!signals(&[("accept-language", "")]).accept_language);
        // Values are compared without regard to case; names arrive lowercase.
        assert!(signals(&[("Sec-Purpose", "Prefetch")]).speculative);
        assert!(signals(&[("sec-fetch-mode", "NAVIGATE")]).navigation);
        assert!(!signals(&[("sec-purpose", "pre")]).speculative);
        let fetch = signals(&[("sec-fetch-site", "cross-site")]);
        assert!(fetch.fetch_metadata && !fetch.navigation);
    }

    #[test]
    fn server_side_senders_match_unless_browsers_only() {
        // What Plausible's Events API documentation shows for server-side use.
        let backend = signals(&[
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Firefox/125.0",
            ),
            ("x-forwarded-for", "192.0.2.7"),
            ("content-type", "application/json"),
        ]);
        assert!(!backend.mismatch(false));
        assert!(backend.mismatch(true));
        // A browser never sends fetch metadata without Accept-Language, nor a navigation.
        assert!(signals(&[("sec-fetch-mode", "cors")]).mismatch(false));
        assert!(
            signals(&[("accept-language", "en"), ("sec-fetch-mode", "navigate")]).mismatch(false)
        );
        assert!(!Signals::browser().mismatch(true));
    }
}
