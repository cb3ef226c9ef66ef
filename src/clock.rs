//! The wall clock, and what is computed from it: waits (`Retry-After` in both
//! of its forms, shared by the registry and GitHub clients) and per-run facts
//! such as check-run times. Never anything a capsule holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::timestamp::{Created, TimestampError};

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Now, to the second: for per-run facts (check-run times, commit dates of
/// GitOps records), never for anything a capsule holds. An error only for a
/// clock set before 1970.
pub fn now_created() -> Result<Created, TimestampError> {
    Created::from_unix(now_unix(), "the system clock")
}

/// [`now_created`] as RFC 3339 UTC, for check-run times and log lines.
pub fn now_rfc3339() -> String {
    now_created().map(|c| c.to_string()).unwrap_or_default()
}

/// `Retry-After` as a wait: delay-seconds, or an HTTP-date (IMF-fixdate, the
/// form RFC 9110 requires senders to use) compared with `now_unix`. A date in
/// the past means "now".
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(u64::try_from(at - now_unix).unwrap_or(0)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_http_date(value: &str) -> Option<i64> {
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    if day.len() != 2 || year.len() != 4 || time.len() != 8 {
        return None;
    }
    let rfc3339 = format!("{year}-{month:02}-{day}T{time}Z");
    rfc3339.parse::<Created>().ok().map(Created::unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_retry_after_forms() {
        let now = "2026-11-20T10:11:12Z".parse::<Created>().unwrap().unix();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Fri, 20 Nov 2026 10:11:42 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Fri, 20 Nov 2026 10:00:00 GMT", now), Some(Duration::ZERO), "past dates mean now");
        for bad in ["-1", "soon", "Fri, 20 Nov 2026 10:11:42 UTC", "Fri, 20 Foo 2026 10:11:42 GMT", "1.5", ""] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
