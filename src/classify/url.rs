//! Page URL and referrer normalisation.
//!
//! Only what a dashboard needs is kept: the host (without `www.`), the path, and the five UTM
//! parameters. Query strings can carry personal data (e-mail addresses, tokens), so no query
//! survives in any stored string, however it is encoded: paths are percent-decoded until nothing
//! is left to decode (double encoding included) and then cut at the first `?`, `#` or `;`. In
//! hash mode the fragment's path is kept, never its parameters (`#/callback?access_token=…`
//! keeps `#/callback`; `#access_token=…` keeps nothing). Userinfo (`user:pass@`) is dropped.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

pub use crate::model::text::{MAX_HOST_LEN, normalize_host, truncate};

/// Longest UTM value kept; longer ones are cut at a character boundary.
pub(crate) const MAX_UTM_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Utm<'a> {
    pub source: Cow<'a, str>,
    pub medium: Cow<'a, str>,
    pub campaign: Cow<'a, str>,
    pub content: Cow<'a, str>,
    pub term: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// Lower case, no `www.`, no port.
    pub hostname: Cow<'a, str>,
    /// Percent-decoded path; `/` when empty.
    pub pathname: Cow<'a, str>,
    pub utm: Utm<'a>,
}

impl Page<'_> {
    /// The same page owning its strings.
    pub fn into_owned<'b>(self) -> Page<'b> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Page {
            hostname: own(self.hostname),
            pathname: own(self.pathname),
            utm: Utm {
                source: own(self.utm.source),
                medium: own(self.utm.medium),
                campaign: own(self.utm.campaign),
                content: own(self.utm.content),
                term: own(self.utm.term),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an absolute URL (expected scheme://host/path)")]
    NotAbsolute,
    #[error("URL has no host")]
    NoHost,
}

/// The parts of an absolute URL, as slices of the input.
struct Parts<'a> {
    /// Host and port, without userinfo.
    authority: &'a str,
    host: &'a str,
    path: &'a str,
    query: &'a str,
    fragment: Option<&'a str>,
}

fn split(url: &str) -> Result<Parts<'_>, UrlError> {
    let url = url.trim();
    // The scheme ends at the first ':', as it cannot hold one: a byte search, where the
    // pattern "://" would build a substring searcher for every URL.
    let (scheme, rest) = url
        .split_once(':')
        .and_then(|(scheme, rest)| Some((scheme, rest.strip_prefix("//")?)))
        .ok_or(UrlError::NotAbsolute)?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(UrlError::NotAbsolute);
    }
    // One pass finds the fragment, the query and the path, each ending at the first of its
    // delimiters: a search per delimiter cost three scans and a searcher each.
    let (mut slash, mut question, mut hash) = (None, None, None);
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'#' => {
                hash = Some(i);
                break;
            }
            b'?' if question.is_none() => question = Some(i),
            b'/' if slash.is_none() && question.is_none() => slash = Some(i),
            _ => {}
        }
    }
    let fragment = hash.map(|i| &rest[i + 1..]);
    let before_fragment = &rest[..hash.unwrap_or(rest.len())];
    let (before_query, query) = match question {
        Some(i) => (&before_fragment[..i], &before_fragment[i + 1..]),
        None => (before_fragment, ""),
    };
    let (authority, path) = before_query.split_at(slash.unwrap_or(before_query.len()));
    // Drop userinfo, then the port (IPv6 literals keep their brackets' content).
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']').map_or(v6, |(h, _)| h)
    } else {
        authority.split_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    Ok(Parts {
        authority,
        host,
        path,
        query,
        fragment,
    })
}

/// Parses the page URL of an event.
pub fn parse_page(url: &str, hash_mode: bool) -> Result<Page<'_>, UrlError> {
    let parts = split(url)?;
    let mut pathname = clean_path(parts.path, b"?#;");
    if pathname.is_empty() {
        pathname = Cow::Borrowed("/");
    }
    if hash_mode && let Some(fragment) = parts.fragment {
        // A fragment that holds parameters (`#access_token=…`) is not a route.
        let route = clean_path(fragment, b"?;&");
        if !route.is_empty() && !route.contains('=') {
            pathname = Cow::Owned(format!("{pathname}#{route}"));
        }
    }
    Ok(Page {
        hostname: normalize_host(parts.host),
        pathname,
        utm: utm(parts.query),
    })
}

/// The normalised host of a referrer URL, if it parses.
pub(crate) fn referrer_host(referrer: &str) -> Option<Cow<'_, str>> {
    split(referrer).ok().map(|p| normalize_host(p.host))
}

/// A referrer reduced to `host/path`, or `None` when absent, unparseable or from the same site.
pub fn normalize_referrer<'a>(
    referrer: Option<&'a str>,
    page_host: &str,
) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
    let parts = split(referrer?).ok()?;
    let host = normalize_host(parts.host);
    if host == page_host {
        return None;
    }
    let path = clean_path(parts.path, b"?#;");
    let path = match path {
        Cow::Borrowed(p) => Cow::Borrowed(p.trim_end_matches('/')),
        Cow::Owned(p) => Cow::Owned(p.trim_end_matches('/').to_owned()),
    };
    let full = if path.is_empty() {
        host.clone()
    } else {
        Cow::Owned(format!("{host}{path}"))
    };
    Some((host, full))
}

fn utm(query: &str) -> Utm<'_> {
    let mut utm = Utm::default();
    if query.is_empty() {
        return utm;
    }
    let mut fallback_source: Option<Cow<'_, str>> = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_content" => &mut utm.content,
            "utm_term" => &mut utm.term,
            // Plausible also reads `ref` and `source` when there is no utm_source.
            "ref" | "source" => {
                if fallback_source.is_none() {
                    fallback_source = Some(decode_query_value(v));
                }
                continue;
            }
            _ => continue,
        };
        if slot.is_empty() {
            *slot = decode_query_value(v);
        }
    }
    if utm.source.is_empty()
        && let Some(s) = fallback_source
    {
        utm.source = s;
    }
    utm
}

fn decode_query_value(v: &str) -> Cow<'_, str> {
    let v = truncate(v, MAX_UTM_LEN * 3);
    let decoded = if v.contains('+') {
        Cow::Owned(clean_path(&v.replace('+', " "), b"?#;").into_owned())
    } else {
        clean_path(v, b"?#;")
    };
    // A decoded `&` can still bring parameters along (`a%26token%3D…`).
    let decoded = match parameters_start(&decoded) {
        None => decoded,
        Some(i) => Cow::Owned(decoded[..i].to_owned()),
    };
    match decoded {
        Cow::Borrowed(s) => Cow::Borrowed(truncate(s.trim(), MAX_UTM_LEN)),
        Cow::Owned(s) => Cow::Owned(truncate(s.trim(), MAX_UTM_LEN).to_owned()),
    }
}

/// `s` percent-decoded until nothing is left to decode, then cut before the first of `stops`.
fn clean_path<'a>(s: &'a str, stops: &[u8]) -> Cow<'a, str> {
    let decoded = decode_all(s);
    // Every stop is ASCII, so a byte search finds it at a character boundary.
    match decoded.bytes().position(|b| stops.contains(&b)) {
        None => decoded,
        Some(i) => cut(decoded, i),
    }
}

/// `s` up to byte `at`, borrowed where it was.
fn cut(s: Cow<'_, str>, at: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..at]),
        Cow::Owned(mut o) => {
            o.truncate(at);
            Cow::Owned(o)
        }
    }
}

/// Rounds of decoding at most: `%25253F` is `?` after three.
const DECODE_ROUNDS: usize = 4;

/// Percent-decodes repeatedly while escapes remain (a double-encoded `%253F` is a `?`). What
/// is still encoded after [`DECODE_ROUNDS`] could hide anything (`%252525253F` is a `?` after
/// five), so the string ends before it.
fn decode_all(s: &str) -> Cow<'_, str> {
    // Most paths hold no escape at all: one byte search settles them.
    if !s.as_bytes().contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let mut out = decode(s);
    for _ in 1..DECODE_ROUNDS {
        if first_escape(&out).is_none() {
            break;
        }
        out = Cow::Owned(decode(&out).into_owned());
    }
    match first_escape(&out) {
        None => out,
        Some(i) => cut(out, i),
    }
}

/// Byte offset of the first `%XX` escape.
fn first_escape(s: &str) -> Option<usize> {
    s.as_bytes()
        .windows(3)
        .position(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Where parameters begin in a decoded free-text value: the first `?`, `#`, `;` or `&` with
/// an `=` after it (`/checkout?coupon=…`, `a&token=…`). A question mark in prose is kept.
fn parameters_start(s: &str) -> Option<usize> {
    let eq = s.rfind('=')?;
    s[..eq].find(['?', '#', ';', '&'])
}

/// A free-text value (a custom property, a UTM value) as it may be stored: decoded like a
/// path, and ended before any parameters; a value that is a URL keeps only scheme, host and
/// path (see [`strip_url`]).
pub(crate) fn strip_value(value: &str) -> Cow<'_, str> {
    if value.contains("://") {
        return strip_url(value);
    }
    let decoded = decode_all(value);
    match parameters_start(&decoded) {
        None => decoded,
        Some(i) => cut(decoded, i),
    }
}

/// A value that is itself a URL (a link's address in a custom property) without userinfo,
/// query or fragment; any other value as it is.
pub(crate) fn strip_url(value: &str) -> Cow<'_, str> {
    let Some((scheme, _)) = value.trim().split_once("://") else {
        return Cow::Borrowed(value);
    };
    // Without a host to keep, nothing after the scheme is known to be harmless.
    let Ok(parts) = split(value) else {
        return Cow::Owned(format!("{}://", truncate(scheme, 32)));
    };
    let authority = clean_path(parts.authority, b"?#;/");
    let authority = authority.rsplit_once('@').map_or(&*authority, |(_, h)| h);
    let path = clean_path(parts.path, b"?#;");
    Cow::Owned(format!("{scheme}://{authority}{path}"))
}

/// Percent-decodes, replacing invalid UTF-8; borrows when there is nothing to decode.
fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    match percent_decode_str(s).decode_utf8_lossy() {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(o) => Cow::Owned(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_and_no_query() {
        let p = parse_page(
            "https://WWW.Example.com:8443/pricing?email=a@b.c&utm_source=news#top",
            false,
        )
        .unwrap();
        assert_eq!(p.hostname, "example.com");
        assert_eq!(p.pathname, "/pricing");
        assert_eq!(p.utm.source, "news");
        let p = parse_page("https://example.com", false).unwrap();
        assert_eq!(p.pathname, "/");
        let p = parse_page("http://user:pw@[2001:db8::1]:80/a", false).unwrap();
        assert_eq!(p.hostname, "2001:db8::1");
    }

    #[test]
    fn fragment_only_in_hash_mode() {
        let url = "https://app.example.com/#/settings/profile?x=1";
        assert_eq!(parse_page(url, false).unwrap().pathname, "/");
        assert_eq!(
            parse_page(url, true).unwrap().pathname,
            "/#/settings/profile"
        );
        assert_eq!(parse_page("https://a.com/x#", true).unwrap().pathname, "/x");
    }

    #[test]
    fn percent_decoding() {
        let p = parse_page("https://a.com/caf%C3%A9?utm_campaign=spring+sale%21", false).unwrap();
        assert_eq!(p.pathname, "/café");
        assert_eq!(p.utm.campaign, "spring sale!");
        let p = parse_page("https://a.com/bad%FF", false).unwrap();
        assert_eq!(p.pathname, "/bad\u{FFFD}");
    }

    #[test]
    fn all_utm_fields_and_ref_fallback() {
        let p = parse_page(
            "https://a.com/?utm_source=s&utm_medium=m&utm_campaign=c&utm_content=co&utm_term=t&ref=ignored",
            false,
        )
        .unwrap();
        assert_eq!(
            (
                &*p.utm.source,
                &*p.utm.medium,
                &*p.utm.campaign,
                &*p.utm.content,
                &*p.utm.term
            ),
            ("s", "m", "c", "co", "t")
        );
        assert_eq!(
            parse_page("https://a.com/?ref=producthunt", false)
                .unwrap()
                .utm
                .source,
            "producthunt"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            parse_page(&format!("https://a.com/?utm_term={long}"), false)
                .unwrap()
                .utm
                .term
                .len(),
            MAX_UTM_LEN
        );
    }

    #[test]
    fn bad_urls() {
        assert_eq!(
            parse_page("/relative/path", false),
            Err(UrlError::NotAbsolute)
        );
        assert_eq!(parse_page("https:///nohost", false), Err(UrlError::NoHost));
        assert_eq!(
            parse_page("java script://x", false),
            Err(UrlError::NotAbsolute)
        );
    }

    #[test]
    fn referrer_host_and_path_only() {
        let (host, full) =
            normalize_referrer(Some("https://www.Google.com/search?q=secret"), "a.com").unwrap();
        assert_eq!((&*host, &*full), ("google.com", "google.com/search"));
        let (_, full) = normalize_referrer(Some("https://news.ycombinator.com/"), "a.com").unwrap();
        assert_eq!(full, "news.ycombinator.com");
        assert_eq!(
            normalize_referrer(Some("https://www.a.com/other"), "a.com"),
            None,
            "same site"
        );
        assert_eq!(normalize_referrer(Some("not a url"), "a.com"), None);
        assert_eq!(normalize_referrer(None, "a.com"), None);
        let (host, _) =
            normalize_referrer(Some("android-app://com.google.android.gm/"), "a.com").unwrap();
        assert_eq!(host, "com.google.android.gm");
    }

    #[test]
    fn escapes_left_after_the_last_round_end_the_path() {
        let mut hidden = "?email=victim@example.com".to_string();
        for _ in 0..5 {
            hidden =
                percent_encoding::utf8_percent_encode(&hidden, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
        }
        let url = format!("https://a.com/reset{hidden}");
        assert_eq!(parse_page(&url, false).unwrap().pathname, "/reset");
        let p = parse_page("https://a.com/100%2525252525", false).unwrap();
        assert_eq!(p.pathname, "/100");
    }

    #[test]
    fn free_text_values_lose_their_parameters() {
        for (value, want) in [
            ("/checkout?coupon=SECRET", "/checkout"),
            ("/checkout%3Fcoupon%3DSECRET", "/checkout"),
            ("plan&token=abc", "plan"),
            ("x;jsessionid=1", "x"),
            ("Is this free?", "Is this free?"),
            ("a = b", "a = b"),
            ("https:///x?t=secret", "https://"),
            (
                "https://user:pw@shop.example/p?x=1",
                "https://shop.example/p",
            ),
            ("https://shop.example%3Fa%3Db/p", "https://shop.example/p"),
        ] {
            assert_eq!(strip_value(value), want, "{value}");
        }
        let p = parse_page("https://a.com/?utm_campaign=spring%26token%3Dabc", false).unwrap();
        assert_eq!(p.utm.campaign, "spring");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
