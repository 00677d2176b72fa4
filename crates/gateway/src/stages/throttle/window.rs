//! Calendar windows (UTC) for quotas: a quota of 10 000 per day resets at midnight UTC, per month on the first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    pub fn parse(unit: &str) -> Option<Period> {
        match unit {
            "h" | "hour" => Some(Period::Hour),
            "d" | "day" => Some(Period::Day),
            "month" | "mo" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The window's nominal length, for `RateLimit-Policy`.
    pub fn nominal(self) -> Duration {
        Duration::from_secs(match self {
            Period::Hour => 3600,
            Period::Day => 86_400,
            Period::Month => 30 * 86_400,
        })
    }

    /// The current window's id and the time until it ends.
    pub fn current(self) -> (u64, Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.at(now.as_secs())
    }

    pub fn at(self, secs: u64) -> (u64, Duration) {
        match self {
            Period::Hour => (secs / 3600, Duration::from_secs(3600 - secs % 3600)),
            Period::Day => (secs / 86_400, Duration::from_secs(86_400 - secs % 86_400)),
            Period::Month => {
                let days = (secs / 86_400) as i64;
                let (y, m, _) = civil_from_days(days);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let next = days_from_civil(ny, nm, 1) as u64 * 86_400;
                ((y as u64) * 12 + u64::from(m), Duration::from_secs(next.saturating_sub(secs).max(1)))
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
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

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_utc_boundaries() {
        // 2024-02-29T23:00:00Z
        let t = 1_709_247_600;
        assert_eq!(Period::Hour.at(t).1, Duration::from_secs(3600));
        assert_eq!(Period::Day.at(t).1, Duration::from_secs(3600));
        assert_eq!(Period::Month.at(t).1, Duration::from_secs(3600), "leap February ends at midnight");
        assert_eq!(civil_from_days(days_from_civil(2025, 12, 31)), (2025, 12, 31));
        let (a, _) = Period::Month.at(t);
        let (b, _) = Period::Month.at(t + 3600);
        assert_ne!(a, b);
    }
}
