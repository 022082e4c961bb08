//! Small text helpers shared by classification, configuration and delivery.

use std::borrow::Cow;

/// Longest host name kept (DNS's limit).
pub const MAX_HOST_LEN: usize = 253;

/// Cuts at a character boundary at or below `max` bytes.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lower-cases and strips `www.`; borrows when the host is already normal. Page hosts, site
/// domains and host patterns all go through this, so they compare equal.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = truncate(host, MAX_HOST_LEN);
    let lowered: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    match lowered {
        Cow::Borrowed(h) => Cow::Borrowed(h.strip_prefix("www.").unwrap_or(h)),
        Cow::Owned(h) => Cow::Owned(h.strip_prefix("www.").map(str::to_owned).unwrap_or(h)),
    }
}

/// A configured host name (a site's domain, a host pattern's host): trimmed and normalised;
/// `None` when it is not a bare host name (a scheme, path, port or other character).
pub(crate) fn host_name(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // normalize_host cuts what is too long; a configured name that long is refused instead.
    if raw.len() > MAX_HOST_LEN {
        return None;
    }
    let host = normalize_host(raw);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    valid.then(|| host.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }

    #[test]
    fn hosts_are_normalised_once_for_everyone() {
        assert_eq!(normalize_host("WWW.Example.com"), "example.com");
        assert!(matches!(normalize_host("a.com"), Cow::Borrowed(_)));
        assert_eq!(host_name(" www.A.com ").as_deref(), Some("a.com"));
        for bad in ["", "https://a.com", "a.com/x", "a.com:80", "a b"] {
            assert_eq!(host_name(bad), None, "{bad}");
        }
    }
}
