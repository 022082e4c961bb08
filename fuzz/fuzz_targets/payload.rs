//! Any bytes as an event body or a pixel query string: parsing and checking must return a
//! value or an error, never panic, and an accepted payload must respect the documented limits.
#![no_main]

use glimpse::check::{self, Sites};
use glimpse::config::Site;
use glimpse::parse;
use libfuzzer_sys::fuzz_target;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

fuzz_target!(|data: &[u8]| {
    let sites = Sites::new(&[Site {
        domain: "example.com".into(),
    }]);
    if let Ok(p) = parse::parse_json(data) {
        assert!(p.props.len() <= parse::MAX_PROPS);
        assert!(p.url.len() <= parse::MAX_URL_LEN);
        let _ = check::check(p, UA, &sites);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = parse::parse_query_with_defaults(text, Some("https://example.com/")) {
            assert!(p.props.len() <= parse::MAX_PROPS);
            let _ = check::check(p, UA, &sites);
        }
    }
});
