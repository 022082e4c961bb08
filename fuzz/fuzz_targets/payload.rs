//! Any bytes as an event body or a pixel query string: parsing, classification and the filter
//! (including the shields' path and host patterns and the referrer-spam lookup) must return a
//! value or an error, never panic, and an accepted payload must respect the documented limits.
#![no_main]

use std::sync::LazyLock;

use glimpse::classify::{Classifier, Geo};
use glimpse::filter::{self, ReferrerSpam, Rules, Signals};
use glimpse::model::{HostPattern, IpRanges, PathPattern, Shields, Site};
use glimpse::parse::{self, Payload};
use libfuzzer_sys::fuzz_target;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let site = Site {
        domain: "example.com".into(),
        shields: Shields {
            block_ips: IpRanges::parse("10.0.0.0/8").unwrap(),
            block_countries: vec!["XX".into()],
            exclude_paths: ["/admin/**", "/**/edit*", "/p/*/x"]
                .iter()
                .map(|p| PathPattern::parse(p).unwrap())
                .collect(),
            allow_hostnames: ["example.com", "*.example.com"]
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
        },
        redact_tokens: true,
        goals: Vec::new(),
    };
    let mut rules = Rules::new(&[site]);
    rules.spam = ReferrerSpam::bundled();
    rules
});

static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(|| Classifier::new(Geo::empty()));

/// Classifies and filters; only panics matter.
fn check(p: Payload<'_>) {
    let ip = "192.0.2.1".parse().unwrap();
    if let Ok(event) = CLASSIFIER.classify(p, ip, UA) {
        let _ = filter::filter(event, ip, Signals::browser(), &RULES);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse::parse_json(data) {
        assert!(p.props.len() <= parse::MAX_PROPS);
        assert!(p.url.len() <= parse::MAX_URL_LEN);
        check(p);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = parse::parse_query_with_defaults(text, Some("https://example.com/")) {
            assert!(p.props.len() <= parse::MAX_PROPS);
            check(p);
        }
    }
});
