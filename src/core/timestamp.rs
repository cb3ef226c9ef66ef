//! The release's `created` time: RFC 3339, UTC, to the second. It is always an
//! input (image build date, commit date, `--created`, `SOURCE_DATE_EPOCH`), never
//! the clock, so two builds of one release agree.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("invalid timestamp {value:?}: expected RFC 3339, for example 2026-11-20T10:11:12Z")]
    Syntax { value: String },
    #[error("invalid timestamp {value:?}: {reason}")]
    Range { value: String, reason: &'static str },
}

/// Seconds since the Unix epoch, known to be after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Created(i64);

impl Created {
    pub fn from_unix(secs: i64, shown_as: &str) -> Result<Self, TimestampError> {
        if secs <= 0 {
            return Err(TimestampError::Range {
                value: shown_as.to_owned(),
                reason: "the Unix epoch (or earlier) is a placeholder, not a build date",
            });
        }
        if secs > 253_402_300_799 {
            return Err(TimestampError::Range { value: shown_as.to_owned(), reason: "after year 9999" });
        }
        Ok(Self(secs))
    }
    pub fn unix(self) -> i64 {
        self.0
    }
    /// Parses `SOURCE_DATE_EPOCH` (decimal seconds).
    pub fn from_epoch_str(s: &str) -> Result<Self, TimestampError> {
        let secs: i64 = s.trim().parse().map_err(|_| TimestampError::Syntax { value: s.to_owned() })?;
        Self::from_unix(secs, s)
    }
}

fn digits(s: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = s.get(range)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Created {
    type Err = TimestampError;
    /// RFC 3339 with any offset and optional fractional seconds (dropped: the
    /// format keeps whole seconds, as Kargo and the OCI annotation do).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || TimestampError::Syntax { value: s.to_owned() };
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(syntax());
        }
        let (y, mo, d) = (digits(s, 0..4).ok_or_else(syntax)?, digits(s, 5..7).ok_or_else(syntax)?, digits(s, 8..10).ok_or_else(syntax)?);
        let (h, mi, se) =
            (digits(s, 11..13).ok_or_else(syntax)?, digits(s, 14..16).ok_or_else(syntax)?, digits(s, 17..19).ok_or_else(syntax)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
            return Err(syntax());
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(syntax());
            }
            rest = &frac[n..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
                let oh = digits(rest, 1..3).ok_or_else(syntax)?;
                let om = digits(rest, 4..6).ok_or_else(syntax)?;
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                sign * (oh * 3600 + om * 60)
            }
            _ => return Err(syntax()),
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset;
        Self::from_unix(secs, s)
    }
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = (self.0.div_euclid(86_400), self.0.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_to_utc_seconds() {
        let c: Created = "2026-11-20T12:11:12.987+02:00".parse().unwrap();
        assert_eq!(c.to_string(), "2026-11-20T10:11:12Z");
        assert_eq!(c, Created::from_epoch_str("1795169472").unwrap());
        assert_eq!("2024-02-29T00:00:00Z".parse::<Created>().unwrap().to_string(), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn rejects_bad_and_placeholder_dates() {
        for bad in
            ["2026-11-20", "2026-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2026-11-20T10:11:12", "1970-01-01T00:00:00Z", "yesterday"]
        {
            assert!(bad.parse::<Created>().is_err(), "{bad}");
        }
        assert!(Created::from_epoch_str("0").is_err());
    }
}
