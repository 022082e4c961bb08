//! Bot-filter accuracy on public user-agent corpora, measured with the collector's own
//! classifier:
//!
//! - real browser traffic: npm `user-agents` (10 000 user agents seen on real sites, each with a
//!   traffic weight and a device category);
//! - bots: npm `crawler-user-agents` (every example instance of every crawler pattern).
//!
//! Prints the figures the README quotes and fails below the goals: at least 98 % of bots
//! dropped, at most 0.5 % of browsers dropped, at least 97 % device-class agreement.
//! `scripts/ua-accuracy.sh` runs just this test and prints the misclassified user agents.

use glimpse::classify::ua::classify;
use glimpse::model::Device;
use serde_json::Value;

const MIN_BOTS_DROPPED: f64 = 98.0;
const MAX_BROWSERS_DROPPED: f64 = 0.5;
const MIN_DEVICE_AGREEMENT: f64 = 97.0;

struct Browser {
    ua: String,
    weight: f64,
    device: Device,
}

fn browsers() -> Vec<Browser> {
    let json: Value =
        serde_json::from_str(&support::test_dep("user-agents", "dist/user-agents.json"))
            .expect("user-agents.json is JSON");
    json.as_array()
        .expect("a list")
        .iter()
        .map(|e| Browser {
            ua: e["userAgent"].as_str().expect("userAgent").to_string(),
            weight: e["weight"].as_f64().expect("weight"),
            device: match e["deviceCategory"].as_str() {
                Some("desktop") => Device::Desktop,
                Some("mobile") => Device::Mobile,
                Some("tablet") => Device::Tablet,
                other => panic!("unexpected deviceCategory {other:?}"),
            },
        })
        .collect()
}

fn bots() -> Vec<String> {
    let json: Value = serde_json::from_str(&support::test_dep(
        "crawler-user-agents",
        "crawler-user-agents.json",
    ))
    .expect("crawler-user-agents.json is JSON");
    json.as_array()
        .expect("a list")
        .iter()
        .flat_map(|p| p["instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i.as_str().map(String::from))
        .collect()
}

fn pct(part: f64, whole: f64) -> f64 {
    100.0 * part / whole
}

#[test]
fn bot_filter_accuracy_on_public_corpora() {
    let browsers = browsers();
    let bots = bots();
    assert!(
        browsers.len() > 5_000 && bots.len() > 1_000,
        "corpora too small"
    );
    let verbose = std::env::var_os("GLIMPSE_ACCURACY_VERBOSE").is_some();

    let total_weight: f64 = browsers.iter().map(|b| b.weight).sum();
    let (mut kept, mut kept_weight) = (0usize, 0.0);
    let (mut agree, mut agree_weight) = (0usize, 0.0);
    let mut by_class = [(0usize, 0usize); 3];
    for b in &browsers {
        let Ok(client) = classify(&b.ua) else {
            if verbose {
                println!("browser dropped: {:?} {}", classify(&b.ua), b.ua);
            }
            continue;
        };
        kept += 1;
        kept_weight += b.weight;
        let class = match b.device {
            Device::Desktop => 0,
            Device::Mobile => 1,
            _ => 2,
        };
        by_class[class].0 += 1;
        if client.device == b.device {
            agree += 1;
            agree_weight += b.weight;
            by_class[class].1 += 1;
        } else if verbose {
            println!("device {:?} != {:?}: {}", client.device, b.device, b.ua);
        }
    }
    let dropped_bots = bots.iter().filter(|ua| classify(ua).is_err()).count();
    if verbose {
        for ua in bots.iter().filter(|ua| classify(ua).is_ok()) {
            println!("bot kept: {ua}");
        }
    }

    let n = browsers.len() as f64;
    let browsers_dropped = 100.0 - pct(kept as f64, n);
    let browsers_dropped_weighted = 100.0 - pct(kept_weight, total_weight);
    let device = pct(agree as f64, kept as f64);
    let device_weighted = pct(agree_weight, kept_weight);
    let bots_dropped = pct(dropped_bots as f64, bots.len() as f64);
    println!("corpus                              | measure                     | result");
    println!(
        "crawler-user-agents ({:>5} bot UAs)  | bots dropped                | {:.2} % ({dropped_bots}/{})",
        bots.len(),
        bots_dropped,
        bots.len()
    );
    println!(
        "user-agents ({:>5} browser UAs)     | browsers dropped            | {:.2} % ({} UAs); traffic-weighted {:.3} %",
        browsers.len(),
        browsers_dropped,
        browsers.len() - kept,
        browsers_dropped_weighted
    );
    println!(
        "user-agents                         | device class agreement      | {device:.2} %; traffic-weighted {device_weighted:.2} %"
    );
    for (name, (seen, ok)) in ["desktop", "mobile", "tablet"].iter().zip(by_class) {
        println!(
            "user-agents                         |   {name:<8} ({seen:>5} UAs)      | {:.2} %",
            pct(ok as f64, seen.max(1) as f64)
        );
    }

    assert!(
        bots_dropped >= MIN_BOTS_DROPPED,
        "bots dropped {bots_dropped:.2} % < {MIN_BOTS_DROPPED} %"
    );
    assert!(
        browsers_dropped <= MAX_BROWSERS_DROPPED,
        "browsers dropped {browsers_dropped:.2} % > {MAX_BROWSERS_DROPPED} %"
    );
    assert!(
        device >= MIN_DEVICE_AGREEMENT,
        "device agreement {device:.2} % < {MIN_DEVICE_AGREEMENT} %"
    );
}

/// In-app browsers are people: the WebKit view that macOS mail, chat and RSS apps embed (no
/// browser name at all), iOS and Android web views, and social apps' in-app browsers.
#[test]
fn in_app_browsers_are_kept() {
    let cases = [
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
            "Webview",
            Device::Desktop,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "Webview",
            Device::Mobile,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36",
            "Webview",
            Device::Mobile,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/459.0.0.38.108;FBBV/577218946;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
            "Webview",
            Device::Mobile,
        ),
    ];
    for (ua, browser, device) in cases {
        let c = classify(ua).unwrap_or_else(|r| panic!("{ua}: dropped as {r:?}"));
        assert_eq!((c.browser.as_str(), c.device), (browser, device), "{ua}");
    }
}
