//! Any text as a page URL or a referrer: normalisation must not panic, what it keeps must stay
//! within the input's size (no amplification), no kept path holds a query or parameters, and
//! redaction does not panic either.
#![no_main]

use glimpse::classify::{redact, url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for hash_mode in [false, true] {
        if let Ok(page) = url::parse_page(text, hash_mode) {
            assert!(page.pathname.len() <= text.len() + 1);
            assert!(page.hostname.len() <= text.len());
            assert!(!page.pathname.contains('?') && !page.pathname.contains(';'));
            // An address is at least 6 bytes (`a@b.cc`) and becomes 7: no amplification.
            let redacted = redact::emails(&page.pathname);
            assert!(redacted.len() <= page.pathname.len() + page.pathname.len() / 6 + 1);
            let _ = redact::tokens(&redacted);
        }
    }
    if let Some((host, full)) = url::normalize_referrer(Some(text), "example.com") {
        assert!(host.len() <= full.len());
        assert!(full.len() <= text.len());
    }
    let _ = url::truncate(text, 17);
});
