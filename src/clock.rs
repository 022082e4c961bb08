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
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        real.saturating_add_signed(self.offset_secs.load(Ordering::Relaxed))
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

#[cfg(test)]
mod tests {
    use super::*;

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
