//! Referrer spam: hosts that fake visits to get their name into analytics reports. The list is
//! bundled (`lists/referrer-spam.txt`, with its source and licence in its header) and held in an
//! immutable hash set, so lookups take no lock.

use std::collections::HashSet;

const BUNDLED: &str = include_str!("../../lists/referrer-spam.txt");

#[derive(Debug, Default)]
pub struct ReferrerSpam {
    hosts: HashSet<&'static str>,
}

impl ReferrerSpam {
    /// The bundled list.
    pub fn bundled() -> ReferrerSpam {
        ReferrerSpam::from_text(BUNDLED)
    }

    /// One host per line, `#` comments; hosts are stored lower-case without `www.`.
    pub(crate) fn from_text(text: &'static str) -> ReferrerSpam {
        let hosts = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_prefix("www.").unwrap_or(l))
            .collect();
        ReferrerSpam { hosts }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Whether `host` (normalised: lower case, no `www.`) or one of its parent domains is listed.
    pub fn contains(&self, host: &str) -> bool {
        let mut rest = host;
        loop {
            if self.hosts.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                // Stop at the last label: a bare TLD is never listed.
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_their_subdomains_match() {
        let s = ReferrerSpam::from_text("# header\nsemalt.com\nwww.darodar.com\n\n");
        assert_eq!(s.len(), 2);
        assert!(s.contains("semalt.com") && s.contains("x.y.semalt.com"));
        assert!(s.contains("darodar.com"));
        assert!(!s.contains("notsemalt.com") && !s.contains("com") && !s.contains("example.org"));
    }

    #[test]
    fn bundled_list_is_large_and_well_formed() {
        let s = ReferrerSpam::bundled();
        assert!(s.len() > 1_000, "{} hosts", s.len());
        assert!(
            s.hosts
                .iter()
                .all(|h| h.contains('.') && *h == h.to_ascii_lowercase())
        );
    }
}
