//! Any bytes as an event body or a pixel query string: parsing and checking (including the
//! shields' path and host patterns and the referrer-spam lookup) must return a value or an
//! error, never panic, and an accepted payload must respect the documented limits.
#![no_main]

use std::sync::LazyLock;

use glimpse::check::{self, ReferrerSpam, Rules, Sender, Signals};
use glimpse::config::{Shields, Site};
use glimpse::parse;
use libfuzzer_sys::fuzz_target;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let site = Site {
        domain: "example.com".into(),
        shields: Shields {
            block_ips: vec!["10.0.0.0/8".parse().unwrap()],
            block_countries: vec!["XX".into()],
            exclude_paths: vec!["/admin/**".into(), "/**/edit*".into(), "/p/*/x".into()],
            allow_hostnames: vec!["example.com".into(), "*.example.com".into()],
        },
    };
    let mut rules = Rules::new(&[site]);
    rules.spam = ReferrerSpam::bundled();
    rules
});

fuzz_target!(|data: &[u8]| {
    let sender = Sender {
        ip: "192.0.2.1".parse().unwrap(),
        user_agent: UA,
        signals: Signals::browser(),
    };
    if let Ok(p) = parse::parse_json(data) {
        assert!(p.props.len() <= parse::MAX_PROPS);
        assert!(p.url.len() <= parse::MAX_URL_LEN);
        let _ = check::check(p, &sender, &RULES);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = parse::parse_query_with_defaults(text, Some("https://example.com/")) {
            assert!(p.props.len() <= parse::MAX_PROPS);
            let _ = check::check(p, &sender, &RULES);
        }
    }
});
