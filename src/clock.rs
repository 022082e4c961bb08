//! Wall-clock time and UTC days, without a date library.
//!
//! Salts rotate and partitions expire on UTC day boundaries, so day numbers (days since
//! 1970-01-01, as ClickHouse's `Date` stores them) are the unit everywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECS_PER_DAY: u64 = 86_400;

/// The system clock, with an offset that tests use to move through days.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// Seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now_millis() / 1000
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        real.saturating_add_signed(
            self.offset_secs
                .load(Ordering::Relaxed)
                .saturating_mul(1000),
        )
    }

    /// Moves this clock (and every clone of it) by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

/// The UTC day number of a Unix time.
pub fn day_of(unix_secs: u64) -> u16 {
    (unix_secs / SECS_PER_DAY).min(u64::from(u16::MAX)) as u16
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian; Howard Hinnant's civil_from_days).
pub fn date_string(day: u16) -> String {
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` date (Howard Hinnant's days_from_civil); `None` when it is
/// not a real date from 1970 on.
pub fn parse_date(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        s[..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..].parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = u16::try_from(era * 146_097 + doe - 719_468).ok()?;
    // Reject 2026-02-31 and the like: the day must print back as given.
    (date_string(day) == s).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_date_round_trips() {
        for day in [0u16, 11_016, 20_413, 20_415] {
            assert_eq!(parse_date(&date_string(day)), Some(day));
        }
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-01",
            "1969-12-31",
            "2026-11-1x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(day_of(951_782_400)), "2000-02-29");
        assert_eq!(date_string(day_of(1_795_219_200)), "2026-11-21");
        assert_eq!(day_of(86_399), 0);
        assert_eq!(day_of(86_400), 1);
    }

    #[test]
    fn clones_share_the_offset() {
        let c = Clock::default();
        let d = c.clone();
        let before = d.now();
        c.advance(SECS_PER_DAY as i64);
        assert!(d.now() >= before + SECS_PER_DAY);
    }
}
