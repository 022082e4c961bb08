//! Classify: what the request says, in the classes that are stored. The page URL becomes host,
//! path and UTM fields; the referrer becomes `host/path` and a traffic source; the user agent
//! becomes a browser class (or the reason it is not a person's browser); the address becomes a
//! country and region. E-mail addresses in any stored string (path, referrer, UTM tags, event
//! name, custom properties) become `(email)`, and property values that are URLs lose their
//! query, fragment and userinfo. Nothing is decided here: the filter stage decides with these
//! classes.

pub mod geo;
pub mod redact;
pub mod ua;
pub mod url;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{BrowserClass, DropReason};
use crate::parse::Payload;

pub use geo::{Geo, Location};
pub use ua::UaCache;
pub use url::Page;

/// What classification needs beyond the request: the geo databases and the user-agent cache.
pub struct Classifier {
    pub geo: Geo,
    user_agents: UaCache,
}

/// An event in stored classes. The raw address and user agent are not part of it.
#[derive(Debug)]
pub struct Classified<'a, 'g> {
    pub payload: Payload<'a>,
    pub page: Page<'a>,
    /// The browser class, or why the user agent is not a person's browser.
    pub browser: Result<Arc<BrowserClass>, DropReason>,
    pub location: Location<'g>,
    /// `host/path` of an external referrer, empty when direct or same-site.
    pub referrer: Cow<'a, str>,
    /// utm_source when present, else the referrer host.
    pub referrer_source: Cow<'a, str>,
}

impl Classifier {
    pub fn new(geo: Geo) -> Classifier {
        Classifier {
            geo,
            user_agents: UaCache::default(),
        }
    }

    /// Classifies one event; the error is the client's mistake, for a 400.
    pub fn classify<'a, 'g>(
        &'g self,
        mut payload: Payload<'a>,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Classified<'a, 'g>, String> {
        let mut page = page(&payload).map_err(|e| format!("`u`: {e}"))?;
        let (ref_host, mut referrer) = referrer(&payload, &page.hostname);
        let mut referrer_source = if page.utm.source.is_empty() {
            ref_host
        } else {
            page.utm.source.clone()
        };
        let utm = &mut page.utm;
        for text in [
            &mut page.pathname,
            &mut utm.source,
            &mut utm.medium,
            &mut utm.campaign,
            &mut utm.content,
            &mut utm.term,
            &mut referrer,
            &mut referrer_source,
            &mut payload.name,
        ] {
            scrub(text);
        }
        for (key, value) in &mut payload.props {
            let stripped = match url::strip_value(value) {
                Cow::Borrowed(b) if b.len() == value.len() => None,
                other => Some(other.into_owned()),
            };
            if let Some(stripped) = stripped {
                *value = Cow::Owned(stripped);
            }
            scrub(key);
            scrub(value);
        }
        Ok(Classified {
            browser: self.user_agents.classify(user_agent),
            location: self.geo.lookup(ip),
            payload,
            page,
            referrer,
            referrer_source,
        })
    }
}

/// Replaces the e-mail addresses in `text`; leaves it untouched (and borrowed) when it has none.
fn scrub(text: &mut Cow<'_, str>) {
    if let Cow::Owned(clean) = redact::emails(text) {
        *text = Cow::Owned(clean);
    }
}

/// The page, borrowing from the payload's URL. The URL is a borrow of the request body unless
/// it had JSON escapes; then the page is built from (and owns) a copy.
fn page<'a>(payload: &Payload<'a>) -> Result<Page<'a>, url::UrlError> {
    match &payload.url {
        Cow::Borrowed(u) => url::parse_page(u, payload.hash_mode),
        Cow::Owned(u) => url::parse_page(u, payload.hash_mode).map(url::Page::into_owned),
    }
}

/// The normalised referrer host and `host/path`, empty when direct or same-site.
fn referrer<'a>(payload: &Payload<'a>, page_host: &str) -> (Cow<'a, str>, Cow<'a, str>) {
    match &payload.referrer {
        Some(Cow::Borrowed(r)) => url::normalize_referrer(Some(*r), page_host).unwrap_or_default(),
        // A referrer with escapes was copied during parsing; normalise that copy into owned
        // strings.
        Some(Cow::Owned(owned)) => url::normalize_referrer(Some(owned), page_host)
            .map(|(h, f)| (Cow::Owned(h.into_owned()), Cow::Owned(f.into_owned())))
            .unwrap_or_default(),
        None => Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_json;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.next() % items.len()]
        }
    }

    /// `s` percent-encoded once: every byte that is not alphanumeric, or every byte.
    fn encode(s: &str, all: bool) -> String {
        s.bytes()
            .map(|b| {
                if !all && (b.is_ascii_alphanumeric() || b == b'/') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// Every stored string of one event (page, referrer, UTM, name, props).
    fn stored(c: &Classified<'_, '_>) -> Vec<String> {
        let u = &c.page.utm;
        let mut all: Vec<String> = [
            &c.page.hostname,
            &c.page.pathname,
            &u.source,
            &u.medium,
            &u.campaign,
            &u.content,
            &u.term,
            &c.referrer,
            &c.referrer_source,
            &c.payload.name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in &c.payload.props {
            all.push(k.to_string());
            all.push(v.to_string());
        }
        all
    }

    /// Generated URLs carrying a secret in every way a query can be smuggled into a path,
    /// referrer, UTM tag or property: no stored string keeps the secret, an e-mail address, a
    /// query or credentials.
    #[test]
    fn no_query_email_or_credential_survives_in_any_stored_string() {
        let classifier = Classifier::new(Geo::empty());
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let secrets = [
            "?email=victim@example.com",
            "?access_token=SECRETTOKEN",
            ";jsessionid=SECRETTOKEN",
            "#/callback?access_token=SECRETTOKEN",
            "#access_token=SECRETTOKEN&state=1",
            "?next=/u/victim@example.com",
        ];
        let wrappings = ["plain", "encoded", "double", "all-encoded", "five-times"];
        let prefixes = ["/reset", "/", "/a/b/", "/u/victim@example.com/inbox"];
        for _ in 0..2000 {
            let secret = rng.pick(&secrets);
            let wrapped = match rng.pick(&wrappings) {
                "plain" => secret.to_string(),
                "encoded" => encode(secret, false),
                "double" => encode(&encode(secret, false), false),
                "five-times" => (0..5).fold(secret.to_string(), |s, _| encode(&s, false)),
                _ => encode(secret, true),
            };
            let path = format!("{}{wrapped}", rng.pick(&prefixes));
            let userinfo = rng.pick(&["", "user:SECRETTOKEN@", "victim%40example.com:pw@"]);
            let url = format!("https://{userinfo}www.a.com{path}");
            let referrer = format!("https://{userinfo}ref.example{path}");
            let hash_mode = rng.next().is_multiple_of(2);
            let body = serde_json::json!({
                "n": rng.pick(&["pageview", "Signup victim@example.com"]),
                "u": url,
                "r": referrer,
                "h": hash_mode,
                "p": {
                    "url": format!("https://{userinfo}out.example{path}"),
                    "email": "victim@example.com",
                    "next": path,
                    "bad_url": format!("https:///{wrapped}"),
                },
            })
            .to_string();
            let utm = format!(
                "https://a.com/?utm_source={}&utm_campaign={}",
                encode("mail?email=victim@example.com", true),
                encode(&format!("x{wrapped}"), false)
            );
            let utm_body = serde_json::json!({"n": "pageview", "u": utm}).to_string();
            for body in [body, utm_body] {
                let payload = parse_json(body.as_bytes()).unwrap();
                let ip = "192.0.2.1".parse().unwrap();
                let c = classifier
                    .classify(payload, ip, "Mozilla/5.0 test")
                    .unwrap();
                for s in stored(&c) {
                    let lower = s.to_ascii_lowercase();
                    for escaped in ["%3f", "%23", "%3b", "%40", "%26"] {
                        assert!(
                            !lower.contains(escaped),
                            "{s:?} keeps {escaped:?} from {body}"
                        );
                    }
                    for bad in [
                        "SECRETTOKEN",
                        "victim",
                        "@",
                        "?",
                        "access_token",
                        "jsessionid",
                    ] {
                        assert!(!s.contains(bad), "{s:?} keeps {bad:?} from {body}");
                    }
                }
            }
        }
    }

    #[test]
    fn routes_in_hash_mode_keep_their_path_only() {
        let classifier = Classifier::new(Geo::empty());
        let ip = "192.0.2.1".parse().unwrap();
        for (u, want) in [
            (
                "https://a.com/app#/callback?access_token=x",
                "/app#/callback",
            ),
            ("https://a.com/#/settings/profile", "/#/settings/profile"),
            ("https://a.com/#access_token=x&state=y", "/"),
            ("https://a.com/%23/secret%3Ftoken", "/"),
            (
                "https://a.com/reset%3Femail%3Dvictim%40example.com",
                "/reset",
            ),
            (
                "https://a.com/u/alice@example.com/inbox",
                "/u/(email)/inbox",
            ),
        ] {
            let body = serde_json::json!({"n": "pageview", "u": u, "h": true}).to_string();
            let c = classifier
                .classify(parse_json(body.as_bytes()).unwrap(), ip, "Mozilla/5.0 test")
                .unwrap();
            assert_eq!(c.page.pathname, want, "{u}");
        }
    }
}
