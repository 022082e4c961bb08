//! Why an event is not recorded: decided by the filter stage, counted per site by `drops`,
//! labelled in metrics and answered in the `x-glimpse-dropped` header.

/// Why an event was not recorded. The string form is the `x-glimpse-dropped` header value, the
/// metrics label and the `reason` column of `dropped_daily`, so it never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    UnknownSite,
    NoUserAgent,
    NotABrowser,
    Headless,
    HttpClient,
    Crawler,
    /// A prefetch or prerender: nobody has seen the page (yet).
    Prefetch,
    /// A browser user agent on a request no browser would send that way.
    HeaderMismatch,
    ReferrerSpam,
    Datacenter,
    BlockedIp,
    BlockedCountry,
    ExcludedPath,
    HostnameNotAllowed,
    /// An `engagement` report from a visitor with no open visit to attach it to (the visit
    /// timed out, the collector restarted, or the visitor's daily id changed at midnight).
    EngagementWithoutVisit,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::UnknownSite,
        DropReason::NoUserAgent,
        DropReason::NotABrowser,
        DropReason::Headless,
        DropReason::HttpClient,
        DropReason::Crawler,
        DropReason::Prefetch,
        DropReason::HeaderMismatch,
        DropReason::ReferrerSpam,
        DropReason::Datacenter,
        DropReason::BlockedIp,
        DropReason::BlockedCountry,
        DropReason::ExcludedPath,
        DropReason::HostnameNotAllowed,
        DropReason::EngagementWithoutVisit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSite => "unknown_site",
            DropReason::NoUserAgent => "no_user_agent",
            DropReason::NotABrowser => "not_a_browser",
            DropReason::Headless => "headless_browser",
            DropReason::HttpClient => "http_client",
            DropReason::Crawler => "crawler",
            DropReason::Prefetch => "prefetch",
            DropReason::HeaderMismatch => "header_mismatch",
            DropReason::ReferrerSpam => "referrer_spam",
            DropReason::Datacenter => "datacenter",
            DropReason::BlockedIp => "blocked_ip",
            DropReason::BlockedCountry => "blocked_country",
            DropReason::ExcludedPath => "excluded_path",
            DropReason::HostnameNotAllowed => "hostname_not_allowed",
            DropReason::EngagementWithoutVisit => "engagement_without_visit",
        }
    }

    /// Position in [`DropReason::ALL`], for counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_distinct_names_and_indexes() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
