//! User-agent classification: browser, OS and device class for people; a named reason for bots.
//!
//! woothee does the parsing. Its `is_crawler()` misses most automation, so bots are decided from
//! `parse()`'s category plus our own rules that run first. The raw string is never kept: the
//! result holds only short class names and major versions.

use std::hash::Hasher;
use std::sync::{Arc, Mutex};

use siphasher::sip128::{Hasher128, SipHasher13};
use woothee::parser::Parser;

use crate::model::text::truncate;
use crate::model::{BrowserClass, Device, DropReason};

/// Longer user agents are cut before parsing: real browsers stay far below this.
pub(crate) const MAX_UA_LEN: usize = 512;
/// Shorter ones are not browsers ("Mozilla/5.0" alone is 11 bytes).
pub(crate) const MIN_UA_LEN: usize = 12;
const MAX_VERSION_LEN: usize = 32;

/// Substrings (lower case) of automation that presents itself as a browser. Electron is an app
/// shell (and the usual automation runtime), not a browser people browse the web with.
const HEADLESS: &[&str] = &[
    "headlesschrome",
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "electron/",
    "cypress/",
];

/// Prefixes (lower case) of HTTP libraries and command-line tools.
const HTTP_CLIENTS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests/",
    "python-urllib/",
    "python-httpx/",
    "python/",
    "aiohttp/",
    "go-http-client/",
    "go ",
    "okhttp/",
    "java/",
    "apache-httpclient/",
    "jakarta commons-httpclient/",
    "axios/",
    "node-fetch/",
    "node/",
    "undici",
    "got ",
    "libwww-perl/",
    "lwp-",
    "ruby",
    "php/",
    "guzzlehttp/",
    "httpie/",
    "postmanruntime/",
    "insomnia/",
    "dart:io",
    "dart/",
    "reqwest/",
    "rest-client/",
    "faraday ",
    "scrapy/",
    "wordpress/",
    "cfnetwork/",
    "dalvik/",
];

/// Substrings (lower case) of crawlers, monitors, previewers and scanners that woothee does not
/// know: named bots first, then words that only automation puts in a user agent.
const CRAWLERS: &[&str] = &[
    "bot/",
    "bot;",
    "bot ",
    "bot)",
    "bot-",
    "-bot",
    "_bot",
    "crawl",
    "spider",
    "robot",
    "gptbot",
    "claudebot",
    "claude-web",
    "ccbot",
    "perplexitybot",
    "bytespider",
    "anthropic-ai",
    "chatgpt-user",
    "oai-searchbot",
    "amazonbot",
    "applebot",
    "facebookexternalhit",
    "meta-externalagent",
    "semrush",
    "ahrefs",
    "mj12bot",
    "dotbot",
    "petalbot",
    "yandex",
    "baiduspider",
    "uptimerobot",
    "pingdom",
    "statuscake",
    "site24x7",
    "headless",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "preview",
    "slurp",
    "duckduckbot",
    "archive",
    "ia_archiver",
    "feed",
    "rss",
    "monitor",
    "validator",
    "check",
    "scan",
    "scrap",
    "synthetic",
    "inspect",
    "proxy",
    "fetch",
    "agent",
    "google",
    "seo",
    "analyz",
    "optimiz",
    "index",
    "harvest",
    "capture",
    "screenshot",
    "render",
    "survey",
    "(compatible;",
];

/// Top-level domains of the contact addresses crawlers put in their user agent; a browser's
/// user agent never names a web site.
const CONTACT_TLDS: &[&str] = &[
    "com", "net", "org", "io", "ai", "co", "app", "dev", "info", "biz", "me", "us", "uk", "de",
    "fr", "ru", "cn", "jp", "nl", "edu", "gov", "tech", "site", "online", "xyz",
];

/// Whether a user agent carries a URL, an e-mail address or a domain name: the signature of a
/// crawler telling site owners who it is.
fn names_a_site(lower: &str) -> bool {
    if lower.contains("http://") || lower.contains("https://") || lower.contains("www.") {
        return true;
    }
    lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .any(|token| {
            let mut labels = token.rsplit('.');
            let tld = labels.next().unwrap_or("");
            let name = labels.next().unwrap_or("");
            CONTACT_TLDS.contains(&tld)
                && name.len() >= 2
                && name.bytes().any(|b| b.is_ascii_alphabetic())
        })
}

/// Classifies a user agent; `Err` names why it is not a person's browser.
pub fn classify(ua: &str) -> Result<BrowserClass, DropReason> {
    let ua = truncate(ua.trim(), MAX_UA_LEN);
    if ua.is_empty() {
        return Err(DropReason::NoUserAgent);
    }
    if !ua.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        // Browsers send printable ASCII; anything else is forged or garbage.
        return Err(DropReason::NotABrowser);
    }
    let lower = ua.to_ascii_lowercase();
    if HEADLESS.iter().any(|k| lower.contains(k)) {
        return Err(DropReason::Headless);
    }
    if HTTP_CLIENTS.iter().any(|k| lower.starts_with(k)) {
        return Err(DropReason::HttpClient);
    }
    // "compatible;" is how bots wrap their name in a browser-like string; of browsers only old
    // Internet Explorer uses it.
    let crawler_word = CRAWLERS.iter().any(|k| {
        lower.contains(k) && !(*k == "(compatible;" && lower.contains("(compatible; msie"))
    });
    // Browsers write exactly "(KHTML, like Gecko)"; automation often adds its name inside.
    let mangled_gecko = lower
        .find("(khtml, like gecko")
        .is_some_and(|i| !lower[i + "(khtml, like gecko".len()..].starts_with(')'));
    if crawler_word || mangled_gecko || lower.ends_with("bot") || names_a_site(&lower) {
        return Err(DropReason::Crawler);
    }
    if ua.len() < MIN_UA_LEN {
        return Err(DropReason::NoUserAgent);
    }
    let parsed = Parser::new().parse(ua).ok_or(DropReason::NotABrowser)?;
    let device = match parsed.category {
        "crawler" => return Err(DropReason::Crawler),
        "pc" => Device::Desktop,
        "smartphone" | "mobilephone" => Device::Mobile,
        "appliance" | "misc" => Device::Other,
        _ => return Err(DropReason::NotABrowser),
    };
    let name = if parsed.name == "UNKNOWN" && is_mac_webview(&lower) {
        "Webview"
    } else {
        parsed.name
    };
    if name == "UNKNOWN" && device != Device::Other {
        return Err(DropReason::NotABrowser);
    }
    let device = if is_tablet(&lower, device) {
        Device::Tablet
    } else {
        device
    };
    Ok(BrowserClass {
        browser: known(name).to_string(),
        browser_version: major(parsed.version).to_string(),
        os: known(parsed.os).to_string(),
        os_version: truncate(known(&parsed.os_version), MAX_VERSION_LEN).to_string(),
        device,
    })
}

/// A classification as the cache hands it out: shared, so a hit costs a reference count.
pub type Classified = Result<Arc<BrowserClass>, DropReason>;

/// A cached classification and the hash of the user agent it belongs to.
type Slot = Option<(u128, Classified)>;

const CACHE_SHARDS: usize = 64;
const CACHE_SLOTS_PER_SHARD: usize = 256;

/// A bounded cache of classifications, keyed by a 128-bit keyed hash of the user agent: real
/// traffic repeats a few thousand user agents, and classifying one costs far more than
/// looking it up. Direct-mapped slots in 64 independently locked shards: memory is fixed
/// (16 384 entries, whatever the number of distinct user agents), a lock is held for a
/// lookup or a store only, and two requests rarely meet on one shard. The user agent itself is
/// not kept, only its hash, under a key that is random per process.
///
/// The hash is SipHash's 128-bit form: a keyed function whose outputs cannot be steered
/// without the key, so a client cannot craft a user agent whose entry another one would find
/// (and be classified, or dropped as a bot, by). One pass gives all 128 bits.
pub struct UaCache {
    key: [u8; 16],
    shards: Vec<Mutex<Vec<Slot>>>,
}

impl Default for UaCache {
    fn default() -> Self {
        UaCache {
            key: random_key(),
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(vec![None; CACHE_SLOTS_PER_SHARD]))
                .collect(),
        }
    }
}

impl std::fmt::Debug for UaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UaCache")
    }
}

impl UaCache {
    pub const CAPACITY: usize = CACHE_SHARDS * CACHE_SLOTS_PER_SHARD;

    /// [`classify`], remembered.
    pub fn classify(&self, ua: &str) -> Classified {
        // Classification only looks at this much, so neither does the key.
        let ua = truncate(ua, MAX_UA_LEN + 64);
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(ua.as_bytes());
        let key = hasher.finish128().as_u128();
        let shard = &self.shards[(key as usize) % CACHE_SHARDS];
        let slot = ((key >> 64) as usize) % CACHE_SLOTS_PER_SHARD;
        if let Ok(slots) = shard.lock()
            && let Some((k, v)) = &slots[slot]
            && *k == key
        {
            return v.clone();
        }
        let value = classify(ua).map(Arc::new);
        if let Ok(mut slots) = shard.lock() {
            slots[slot] = Some((key, value.clone()));
        }
        value
    }
}

/// 16 random bytes from the operating system, as the salts are; the collector cannot run
/// without them.
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).expect("operating system random source unavailable");
    key
}

/// The WebKit view that macOS apps (mail, chat, RSS readers) embed: a Mac, WebKit, and no
/// browser name after `(KHTML, like Gecko)`. woothee knows only the iOS one. The crawler rules
/// have already run, so a named bot in this shape is dropped before it gets here.
fn is_mac_webview(lower: &str) -> bool {
    lower.starts_with("mozilla/5.0 (macintosh;")
        && lower.contains(") applewebkit/")
        && lower.contains(" (khtml, like gecko)")
        && !["safari/", "chrome/", "firefox/", "version/"]
            .iter()
            .any(|b| lower.contains(b))
}

/// woothee has no tablet class: iPads, Android without "Mobile", and named tablets are tablets.
fn is_tablet(lower: &str, device: Device) -> bool {
    if lower.contains("ipad")
        || lower.contains("tablet")
        || lower.contains("kindle")
        || lower.contains("silk/")
    {
        return true;
    }
    lower.contains("android")
        && !lower.contains("mobile")
        && matches!(device, Device::Mobile | Device::Desktop)
}

fn known(value: &str) -> &str {
    if value == "UNKNOWN" { "" } else { value }
}

fn major(version: &str) -> &str {
    let v = known(version);
    truncate(v.split('.').next().unwrap_or(""), MAX_VERSION_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    #[test]
    fn browsers_and_devices() {
        let c = classify(CHROME_WIN).unwrap();
        assert_eq!(
            (
                c.browser.as_str(),
                c.browser_version.as_str(),
                c.os.as_str(),
                c.device
            ),
            ("Chrome", "124", "Windows 10", Device::Desktop)
        );
        let c = classify(IPHONE).unwrap();
        assert_eq!(
            (
                c.browser.as_str(),
                c.browser_version.as_str(),
                c.os.as_str(),
                c.device
            ),
            ("Safari", "17", "iPhone", Device::Mobile)
        );
        assert_eq!(c.os_version, "17.4");
        assert_eq!(classify(IPAD).unwrap().device, Device::Tablet);
        assert_eq!(classify(ANDROID_TABLET).unwrap().device, Device::Tablet);
        assert_eq!(classify(ANDROID_PHONE).unwrap().device, Device::Mobile);
        let c = classify(FIREFOX_LINUX).unwrap();
        assert_eq!((c.browser.as_str(), c.device), ("Firefox", Device::Desktop));
        // Old Internet Explorer is the one browser that says "compatible;".
        let ie = "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)";
        assert_eq!(classify(ie).unwrap().browser, "Internet Explorer");
    }

    #[test]
    fn in_app_views_of_macos_apps_are_webviews() {
        let mail = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
        let c = classify(mail).unwrap();
        assert_eq!(
            (c.browser.as_str(), c.os.as_str(), c.device),
            ("Webview", "Mac OSX", Device::Desktop)
        );
        // The iOS one, which woothee knows.
        let ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
        assert_eq!(classify(ios).unwrap().browser, "Webview");
        // Crawlers in that shape are still crawlers.
        for bot in [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Applebot/0.1",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko; Acme)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) +https://example.net",
        ] {
            assert_eq!(classify(bot), Err(DropReason::Crawler), "{bot}");
        }
    }

    #[test]
    fn bots_are_named() {
        let cases = [
            ("", DropReason::NoUserAgent),
            ("Mozilla/5.0", DropReason::NoUserAgent),
            ("curl/8.5.0 (x86_64-pc-linux-gnu)", DropReason::HttpClient),
            ("curl/8.5.0", DropReason::HttpClient),
            ("Wget/1.21", DropReason::HttpClient),
            ("python-requests/2.31.0 (compat)", DropReason::HttpClient),
            ("Go-http-client/1.1 (compatible)", DropReason::HttpClient),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
                DropReason::Headless,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0) Chrome/124.0 Safari/537.36 \u{e9}",
                DropReason::NotABrowser,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Code/1.9 Chrome/142.0.0.0 Electron/39.8.5 Safari/537.36",
                DropReason::Headless,
            ),
            // A contact URL or domain, "compatible;" around a non-IE name, a name inside the
            // KHTML comment: crawlers' signatures.
            (
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/125.0 Safari/537.36 +https://example.net/about",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 (feeder.co; Macintosh) AppleWebKit/537.36 Chrome/106.0 Safari/537.36",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 (compatible; Current/1.0; RSS Reader)",
                DropReason::Crawler,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko; Acme) Chrome/124.0 Safari/537.36",
                DropReason::Crawler,
            ),
            ("lwp-trivial/1.35", DropReason::HttpClient),
        ];
        for (ua, want) in cases {
            assert_eq!(classify(ua), Err(want), "{ua:?}");
        }
    }

    #[test]
    fn cache_agrees_with_classify_and_stays_bounded() {
        let cache = UaCache::default();
        for ua in [CHROME_WIN, IPHONE, "curl/8.5.0", "", CHROME_WIN] {
            assert_eq!(cache.classify(ua).map(|c| (*c).clone()), classify(ua));
        }
        // Far more distinct user agents than slots: memory does not grow, answers stay right.
        for i in 0..(UaCache::CAPACITY * 2) {
            let ua = format!("{FIREFOX_LINUX} Build/{i}");
            assert_eq!(cache.classify(&ua).map(|c| c.device), Ok(Device::Desktop));
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().unwrap().iter().flatten().count())
            .sum();
        assert!(
            held <= UaCache::CAPACITY && held > UaCache::CAPACITY / 2,
            "{held}"
        );
    }

    #[test]
    fn each_cache_hashes_under_its_own_random_key() {
        let (a, b) = (UaCache::default(), UaCache::default());
        assert_ne!(a.key, b.key);
        assert_ne!(a.key, [0; 16]);
    }

    #[test]
    fn overlong_ua_is_cut_not_rejected() {
        let ua = format!("{CHROME_WIN} {}", "x".repeat(10_000));
        assert_eq!(classify(&ua).unwrap().browser, "Chrome");
    }
}
