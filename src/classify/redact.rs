//! Redaction of identifying text inside stored strings: anything that looks like an e-mail
//! address becomes [`EMAIL`] in every string an event stores; long opaque tokens (reset links,
//! session ids, API keys) in paths become [`TOKEN`] unless a site turns that off. Both borrow
//! when there is nothing to replace, which is almost always.

use std::borrow::Cow;

/// What an e-mail address is stored as.
pub(crate) const EMAIL: &str = "(email)";
/// What a long opaque token is stored as.
pub const TOKEN: &str = "(token)";
/// Shorter runs are ids and words, not secrets.
pub(crate) const MIN_TOKEN_LEN: usize = 32;

fn is_local(b: u8) -> bool {
    // What a local part holds in practice, without the separators of paths and queries
    // (`/`, `?`, `=`, `&`, `#`); and `:`, so that `user:password@host` goes as a whole.
    b.is_ascii_alphanumeric() || b"._+-!$'*^`{|}~:".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// The end of a domain with at least one dot and a top-level label of two letters or more,
/// starting at `start`; `None` when there is none.
fn domain_end(s: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    while end < s.len() && is_domain(s[end]) {
        end += 1;
    }
    // A sentence may end right after the address.
    while end > start && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &s[start..end];
    let last_dot = domain.iter().rposition(|b| *b == b'.')?;
    let tld = &domain[last_dot + 1..];
    (last_dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(end)
}

/// Replaces every e-mail address (`local@domain.tld`) with [`EMAIL`].
pub fn emails(s: &str) -> Cow<'_, str> {
    if !s.contains('@') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        let after_last = spans.last().map_or(0, |&(_, end)| end);
        let mut start = i;
        while start > after_last && is_local(b[start - 1]) {
            start -= 1;
        }
        match domain_end(b, i + 1) {
            Some(end) if start < i => {
                spans.push((start, end));
                i = end;
            }
            _ => i += 1,
        }
    }
    splice(s, &spans, EMAIL)
}

/// `s` with each of the (sorted, disjoint) byte `spans` replaced by `with`; borrowed when
/// there are none.
fn splice<'s>(s: &'s str, spans: &[(usize, usize)], with: &str) -> Cow<'s, str> {
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for &(start, end) in spans {
        out.push_str(&s[copied..start]);
        out.push_str(with);
        copied = end;
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether a run of base64url characters is an opaque token: long, and either hexadecimal
/// (digits and letters a–f only, with dashes as in UUIDs) or random-looking. Random text
/// switches between digits and letters, and from lower to upper case, many times inside its
/// words; slugs (`why-privacy-matters-in-2026`, `iphone15pro-256gb`) and CamelCase hardly do.
/// A run without digits is never a token: 32 random base64url characters hold a digit with a
/// probability above 99.5 %, and long words and titles have none.
fn is_token(run: &[u8]) -> bool {
    if run.len() < MIN_TOKEN_LEN {
        return false;
    }
    let digits = run.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let hex_digits = run.iter().filter(|b| b.is_ascii_hexdigit()).count();
    let hex =
        hex_digits >= MIN_TOKEN_LEN && run.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-');
    let letters = run.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let switches = run
        .windows(2)
        .filter(|w| {
            let (a, b) = (w[0], w[1]);
            (a.is_ascii_digit() && b.is_ascii_alphabetic())
                || (a.is_ascii_alphabetic() && b.is_ascii_digit())
                || (a.is_ascii_lowercase() && b.is_ascii_uppercase())
        })
        .count();
    hex || (digits >= 3 && letters >= 3 && switches >= MIN_SWITCHES)
}

/// Switches between digits and letters (or lower to upper case) that make a run random-looking:
/// a 32-character lower-case-and-digit token averages about 12, and has fewer than 6 about once
/// in a hundred.
const MIN_SWITCHES: usize = 6;

/// Replaces every long opaque token with [`TOKEN`].
pub fn tokens(s: &str) -> Cow<'_, str> {
    if s.len() < MIN_TOKEN_LEN {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_token_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        if is_token(&b[start..i]) {
            spans.push((start, i));
        }
    }
    splice(s, &spans, TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_replaced_wherever_they_stand() {
        for (input, want) in [
            ("/u/alice@example.com/inbox", "/u/(email)/inbox"),
            ("alice.b+tag@mail.example.co.uk", "(email)"),
            ("Contact: Bob_99@Example.ORG.", "Contact: (email)."),
            ("/login/user:s3cret@evil.example.net/", "/login/(email)/"),
            ("a@b.com and c@d.org", "(email) and (email)"),
        ] {
            assert_eq!(emails(input), want, "{input}");
        }
        for kept in [
            "/@mention",
            "/team@home",
            "x@y",
            "@example.com",
            "no at sign",
        ] {
            assert!(matches!(emails(kept), Cow::Borrowed(_)), "{kept}");
        }
    }

    #[test]
    fn opaque_tokens_are_replaced_and_words_kept() {
        let jwt_part = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
        for (input, want) in [
            (
                "/reset/3f9a1c0b7e2d4a6f8b1c3d5e7f9a0b2c".to_string(),
                "/reset/(token)".to_string(),
            ),
            (
                "/orders/550e8400-e29b-41d4-a716-446655440000/receipt".to_string(),
                "/orders/(token)/receipt".to_string(),
            ),
            (format!("/auth/{jwt_part}.x"), "/auth/(token).x".to_string()),
            (
                "/s/AbCdEfGh12345678IjKlMnOp_qRsTuVwX".to_string(),
                "/s/(token)".to_string(),
            ),
            (
                "/confirm/k3j9x0qa7m2v8w1z5b6n4c0p9r7t2y1u".to_string(),
                "/confirm/(token)".to_string(),
            ),
            (
                "/i/K3J9X0QA7M2V8W1Z5B6N4C0P9R7T2Y1U".to_string(),
                "/i/(token)".to_string(),
            ),
            (
                "cs_live_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6".to_string(),
                "(token)".to_string(),
            ),
        ] {
            assert_eq!(tokens(&input), want, "{input}");
        }
        for kept in [
            "/blog/why-privacy-matters-in-2026-and-what-to-do-about-it",
            "/docs/getting_started_with_the_collector_configuration",
            "/p/123456",
            "/a/0123456789abcdef",
            "/deadbeefdeadbeefdeadbeefdeadbeefdead-but-no-digits-here",
            "/The-Ultimate-Guide-To-Privacy-Friendly-Analytics-In-2026-For-Small-Teams",
            "/products/apple-iphone15pro-max-256gb-titanium-rtx4090",
            "/Rindfleischetikettierungsueberwachungsaufgabenuebertragungsgesetz",
            "/releases/2026-11-27-version-12-3-4-notes-and-upgrade-guide",
        ] {
            assert!(matches!(tokens(kept), Cow::Borrowed(_)), "{kept}");
        }
    }
}
