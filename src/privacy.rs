//! The privacy statement: a plain-language account of what Glimpse stores, what it never stores,
//! how visitors are counted and how long data is kept, rendered from the effective configuration
//! and the schema, for operators to paste into their privacy policy.
//!
//! Every claim is backed by a test against a real database (`tests/privacy.rs`): the fields
//! listed here are exactly the stored columns, no table can hold an address or a user agent, the
//! retention stated is the one applied, and the salt lifetime is the one enforced.

use std::fmt::Write as _;

use crate::anonymize::salt::DESTROY_AFTER_SECS;
use crate::config::Config;

/// Stored columns and how the statement describes them.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub columns: &'static [&'static str],
    pub what: &'static str,
}

/// Every column of the raw `events` table (the aggregates hold sums and visitor counts of these),
/// in the statement's words. A test compares these columns with the live table.
pub const STORED: &[Field] = &[
    Field {
        columns: &["timestamp"],
        what: "the time of the event, to the second",
    },
    Field {
        columns: &["site"],
        what: "which of our websites it happened on",
    },
    Field {
        columns: &["name"],
        what: "what happened: a page view, or an action such as a sign-up or a download",
    },
    Field {
        columns: &["hostname", "pathname"],
        what: "the page's host name and path, without its query string",
    },
    Field {
        columns: &["referrer", "referrer_source"],
        what: "the site and path of the page that linked to ours, if any, and the traffic \
               source (that site, or the utm_source, ref or source tag in our page's address)",
    },
    Field {
        columns: &[
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_content",
            "utm_term",
        ],
        what: "campaign tags in the page address (utm_source, utm_medium, utm_campaign, \
               utm_content, utm_term)",
    },
    Field {
        columns: &["country_code", "region"],
        what: "the country and region (state or province, never the city), looked up from the \
               IP address",
    },
    Field {
        columns: &["browser", "browser_version", "os", "os_version"],
        what: "the browser's name and major version and the operating system's name and version",
    },
    Field {
        columns: &["device"],
        what: "the device type (desktop, mobile, tablet)",
    },
    Field {
        columns: &["visitor_id"],
        what: "a daily visitor number (explained below)",
    },
    Field {
        columns: &["interactive"],
        what: "whether the event counts as an interaction with the page",
    },
    Field {
        columns: &["revenue_micros", "revenue_currency"],
        what: "an amount and currency, when we record a purchase",
    },
    Field {
        columns: &["prop_keys", "prop_values"],
        what: "names and values of details we attach to our own custom events",
    },
    Field {
        columns: &[
            "visit_entry",
            "visit_seconds",
            "visit_bounce",
            "visit_exit_prev",
        ],
        what: "how the event continues a visit (whether it starts one, the seconds since the \
               visit's previous event, whether the visit is still a single-page one, and the \
               page it follows), so that visits, their length and their entry and exit pages \
               can be counted without any visit identifier",
    },
    Field {
        columns: &["scroll_gain", "scroll_first", "engaged_ms", "engaged_first"],
        what: "for reports of how far a page was scrolled and how long it was visible and in \
               focus (sent when you leave or switch away from a page), how much they add to \
               that page's deepest scroll and reading time within your visit, so that average \
               scroll depth and time on page can be counted without any visit identifier",
    },
];

/// Every stored column, in [`STORED`]'s order.
pub fn stored_columns() -> Vec<&'static str> {
    STORED
        .iter()
        .flat_map(|f| f.columns.iter().copied())
        .collect()
}

/// Hours within which a day's salt is destroyed, as promised.
pub(crate) const SALT_DESTROYED_WITHIN_HOURS: u64 = 48;

/// What destroys a salt that the collector did not: on servers with TTL, the database itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltBackstop {
    /// The salts table expires rows itself (TTL, ClickHouse 19.6+).
    Database,
    /// Only the collector destroys salts (older servers): at their age while it runs, and at
    /// start-up before anything else.
    CollectorOnly,
}

/// The statement for this configuration, on a server with (or without) the salt `backstop`.
pub fn statement(config: &Config, backstop: SaltBackstop) -> String {
    let mut out = String::with_capacity(3000);
    let sites: Vec<&str> = config.sites.iter().map(|s| s.domain.as_str()).collect();
    let on = if sites.is_empty() {
        "this website".to_string()
    } else {
        sites.join(", ")
    };
    let _ = write!(
        out,
        "We use Glimpse, a privacy-friendly web analytics tool, on {on} to understand page views, \
         traffic sources, browser type, device type and general geography. It sets no cookies \
         and uses no other storage in your browser. It is not used for advertising or to follow \
         you across websites, and the data stays in our own database.\n\n"
    );
    let described: Vec<&str> = STORED.iter().map(|f| f.what).collect();
    let _ = write!(
        out,
        "For each page view or event we record: {}. \
         Your IP address and your browser's full identification string (its user agent) are used \
         only while the request is processed, to derive the country and region, the browser and \
         device type, and the daily visitor number; they are never stored, logged or written to \
         disk. Addresses are stored without their query string or other parameters, and \
         anything in them that looks like an e-mail address{tokens} is replaced by a placeholder \
         before it is stored or counted.\n\n",
        join_fields(&described),
        tokens = tokens_clause(config)
    );
    let who = match backstop {
        SaltBackstop::Database => {
            "by the analytics service, and by the database itself should the service not be \
             running"
        }
        SaltBackstop::CollectorOnly => {
            "by the analytics service, which also forgets it at that age when it cannot reach \
             the database; should the service be stopped for longer, the secret is destroyed \
             when it starts again, before it does anything else"
        }
    };
    let _ = write!(
        out,
        "To count unique visitors without cookies, Glimpse computes a one-way hash of the website, \
         your IP address and your user agent with a random secret that is created for each day \
         (UTC) and destroyed within {SALT_DESTROYED_WITHIN_HOURS} hours, {who}. The resulting \
         number changes every day and differs between websites, so it cannot be used to \
         recognise you on another day or on another website, and once the secret is destroyed \
         nobody, including us, can recompute it.\n\n"
    );
    let sketches = "Once a day is over, its aggregated counts are made final and the daily \
         visitor numbers they were counted from are deleted from them by the analytics service, \
         within 48 hours of the day's start (should the service be stopped then, as soon as it \
         starts again).";
    let retention = if config.retention.events_days == 0 {
        format!(
            "Individual events are not stored: they wait on our server's disk only until they \
             are counted, and only aggregated counts per day and hour (page views, events and \
             the number of distinct daily visitors per page, source, country, region, browser, \
             operating system and device) are kept. {sketches}"
        )
    } else {
        format!(
            "Individual events are deleted after {} days, together with the summary of each \
             daily visitor number made from them once the day is over (how its first visit \
             began, its visits, and the pages and actions it had). Aggregated counts per day \
             and hour (page views, events and the number of distinct daily visitors per page, \
             source, country, region, browser, operating system and device) are kept longer. \
             {sketches}",
            config.retention.events_days
        )
    };
    let aggregates = match config.retention.aggregates_days {
        0 => String::new(),
        days => format!(
            " Aggregated counts are deleted a month at a time, once the month is {days} days old."
        ),
    };
    let _ = writeln!(
        out,
        "{retention}{aggregates} Automated traffic (bots, crawlers, spam) is filtered out and \
         only counted per day by the reason it was filtered."
    );
    out
}

/// What the statement says about tokens: every site redacts them unless configured not to, and
/// the sites that do not are named.
fn tokens_clause(config: &Config) -> String {
    let kept: Vec<&str> = config
        .sites
        .iter()
        .filter(|s| !s.redact_tokens)
        .map(|s| s.domain.as_str())
        .collect();
    if !config.sites.is_empty() && kept.len() == config.sites.len() {
        return String::new();
    }
    let except = if kept.is_empty() {
        String::new()
    } else {
        format!(" (except on {})", kept.join(", "))
    };
    format!(", or like a long random code (such as a password-reset or login link){except},")
}

/// "a; b; and c".
fn join_fields(parts: &[&str]) -> String {
    match parts.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{}; and {last}", rest.join("; ")),
    }
}

/// Destruction age of a salt in hours, rounded up: what [`SALT_DESTROYED_WITHIN_HOURS`] must
/// not be below.
pub fn salt_destroyed_after_hours() -> u64 {
    DESTROY_AFTER_SECS.div_ceil(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(retention: &str, sites: &str) -> Config {
        let env: BTreeMap<String, String> = [
            ("GLIMPSE_RETENTION_EVENTS_DAYS", retention),
            ("GLIMPSE_SITES", sites),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::load(None, &env).unwrap()
    }

    #[test]
    fn every_field_is_described_and_retention_follows_config() {
        let text = statement(
            &config("14", "example.com,shop.example.org"),
            SaltBackstop::Database,
        );
        assert!(text.contains("on example.com, shop.example.org to understand"));
        for f in STORED {
            assert!(text.contains(f.what), "{:?} not described", f.columns);
        }
        assert!(text.contains("deleted after 14 days"));
        assert!(text.contains("within 48 hours"));
        assert!(text.contains("by the database itself"));
        assert!(text.contains("daily visitor numbers they were counted from are deleted"));
        assert!(text.contains("or like a long random code"));
        let aggregates_only = statement(&config("0", "example.com"), SaltBackstop::CollectorOnly);
        assert!(aggregates_only.contains("Individual events are not stored"));
        assert!(!aggregates_only.contains("deleted after"));
        assert!(aggregates_only.contains("destroyed when it starts again"));
        assert!(!aggregates_only.contains("by the database itself"));
    }

    #[test]
    fn sites_that_keep_tokens_are_named() {
        let mut c = config("14", "example.com,shop.example.org");
        c.sites[1].redact_tokens = false;
        let text = statement(&c, SaltBackstop::Database);
        assert!(
            text.contains("login link) (except on shop.example.org),"),
            "{text}"
        );
        c.sites[0].redact_tokens = false;
        let text = statement(&c, SaltBackstop::Database);
        assert!(!text.contains("long random code"));
        assert!(text.contains("looks like an e-mail address is replaced"));
    }

    #[test]
    fn the_salt_promise_is_kept_by_the_code() {
        assert!(salt_destroyed_after_hours() <= SALT_DESTROYED_WITHIN_HOURS);
    }

    #[test]
    fn nothing_that_identifies_a_client_is_described_as_stored() {
        for column in stored_columns() {
            for word in ["ip", "addr", "address", "agent", "ua", "cookie", "city"] {
                let hit = column.split('_').any(|p| p == word);
                assert!(!hit, "column {column} looks like {word}");
            }
        }
    }
}
