//! UTC timestamps in the two forms request signing needs.

use std::time::{SystemTime, UNIX_EPOCH};

/// A moment, as signing needs it: `20260101T000000Z` and `20260101`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// `YYYYMMDD'T'HHMMSS'Z'`.
    pub full: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// Seconds since the epoch.
    pub unix: u64,
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp::at(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    pub(crate) fn at(unix: u64) -> Stamp {
        let days = (unix / 86_400) as i64;
        let secs = unix % 86_400;
        let (y, m, d) = civil_from_days(days);
        let date = format!("{y:04}{m:02}{d:02}");
        let full = format!(
            "{date}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        Stamp { full, date, unix }
    }
}

/// `unix` (seconds since the epoch) in ISO 8601's basic UTC form,
/// `20260101T000000Z`: the form request signing uses, and one that sorts as
/// a file name.
pub fn basic_utc(unix: u64) -> String {
    Stamp::at(unix).full
}

/// Howard Hinnant's days → (year, month, day) for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_match_known_dates() {
        assert_eq!(Stamp::at(0).full, "19700101T000000Z");
        // 2019-02-01T09:00:00Z, the moment of Google's V4 conformance vectors.
        assert_eq!(Stamp::at(1_549_011_600).full, "20190201T090000Z");
        // A leap day.
        assert_eq!(Stamp::at(1_709_208_000).full, "20240229T120000Z");
        assert_eq!(Stamp::at(1_709_208_000).date, "20240229");
        assert_eq!(basic_utc(1_709_208_000), "20240229T120000Z");
    }
}
