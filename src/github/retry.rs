//! When to try a GitHub request again. Pure decisions, so every case is unit
//! tested; the client only sends, sleeps and asks.
//!
//! A create (POST) is never sent twice unless GitHub said it did nothing: a
//! 429, a secondary rate limit (403), or a connection that was refused before
//! anything was sent. A dropped connection after sending may have created the
//! check run already, and a second one would be a duplicate.

use std::time::Duration;

use crate::clock::parse_retry_after;

/// What one attempt came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answer(Answer),
    /// Failed before the request left (connection refused): nothing happened.
    NotSent(String),
    /// Failed after the request may have left (reset, timeout, broken body).
    MaybeSent(String),
}

/// An HTTP answer, with the headers the policy reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub ratelimit_remaining: Option<String>,
    pub ratelimit_reset: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// GitHub's `message`, else the body itself (shortened).
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| super::truncate_chars(self.body.trim(), 200))
    }
    /// How long GitHub asks us to wait when this answer is a rate limit
    /// (429, or 403 with the signs of a primary or secondary rate limit).
    pub fn rate_limit_wait(&self, now_unix: i64) -> Option<Duration> {
        let secondary = self.status == 403 && self.message().to_ascii_lowercase().contains("rate limit");
        let exhausted = self.ratelimit_remaining.as_deref() == Some("0");
        let limited = self.status == 429 || (self.status == 403 && (secondary || exhausted || self.retry_after.is_some()));
        if !limited {
            return None;
        }
        // Seconds or an HTTP-date: the registry client's parser reads both.
        let retry_after = self.retry_after.as_deref().and_then(|v| parse_retry_after(v, now_unix));
        let until_reset = self
            .ratelimit_reset
            .as_deref()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|_| exhausted)
            .map(|reset| Duration::from_secs((reset - now_unix).max(0) as u64 + 1));
        // GitHub's advice without either header: wait at least a minute.
        Some(retry_after.or(until_reset).unwrap_or(Duration::from_secs(60)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Success: use the answer.
    Done,
    Retry(Duration),
    /// Final: report the failure.
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// A single wait longer than this is not worth it: give up instead.
    pub max_wait: Duration,
    /// Waiting in all for one request.
    pub budget: Duration,
    /// First backoff for server errors; doubled each time.
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_attempts: 4, max_wait: Duration::from_secs(60), budget: Duration::from_secs(120), backoff: Duration::from_secs(1) }
    }
}

impl Policy {
    /// `attempts` made so far (≥ 1), `waited` so far; `replayable` when
    /// sending the request twice does no harm (an update without annotations).
    pub fn decide(&self, attempts: u32, waited: Duration, replayable: bool, outcome: &Outcome, now_unix: i64) -> Decision {
        let wait = match outcome {
            Outcome::Answer(a) if a.is_success() => return Decision::Done,
            Outcome::Answer(a) => match a.rate_limit_wait(now_unix) {
                // GitHub refused the request outright: nothing was created.
                Some(wait) => wait,
                None if replayable && (a.status >= 500 || a.status == 408) => self.backoff_for(attempts),
                None => return Decision::GiveUp,
            },
            Outcome::NotSent(_) => self.backoff_for(attempts),
            Outcome::MaybeSent(_) if replayable => self.backoff_for(attempts),
            Outcome::MaybeSent(_) => return Decision::GiveUp,
        };
        if attempts >= self.max_attempts || wait > self.max_wait || waited + wait > self.budget {
            return Decision::GiveUp;
        }
        Decision::Retry(wait)
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempts.saturating_sub(1).min(6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, body: body.into(), ..Default::default() }
    }

    fn decide(attempts: u32, replayable: bool, o: &Outcome) -> Decision {
        Policy::default().decide(attempts, Duration::ZERO, replayable, o, NOW)
    }

    #[test]
    fn success_is_done() {
        assert_eq!(decide(1, false, &Outcome::Answer(answer(201, "{}"))), Decision::Done);
    }

    #[test]
    fn primary_rate_limit_honours_retry_after_even_for_creates() {
        let mut a = answer(429, r#"{"message":"API rate limit exceeded for installation."}"#);
        a.retry_after = Some("3".into());
        assert_eq!(decide(1, false, &Outcome::Answer(a.clone())), Decision::Retry(Duration::from_secs(3)));
        // x-ratelimit-reset when there is no Retry-After.
        a.retry_after = None;
        a.ratelimit_remaining = Some("0".into());
        a.ratelimit_reset = Some((NOW + 9).to_string());
        assert_eq!(decide(1, false, &Outcome::Answer(a.clone())), Decision::Retry(Duration::from_secs(10)));
        // A reset an hour away is not worth waiting for.
        a.ratelimit_reset = Some((NOW + 3600).to_string());
        assert_eq!(decide(1, false, &Outcome::Answer(a.clone())), Decision::GiveUp);
        // Retry-After as an HTTP-date (NOW is Tue, 14 Nov 2023 22:13:20 GMT) wins over the reset.
        a.retry_after = Some("Tue, 14 Nov 2023 22:13:25 GMT".into());
        assert_eq!(decide(1, false, &Outcome::Answer(a)), Decision::Retry(Duration::from_secs(5)));
    }

    #[test]
    fn secondary_rate_limit_is_a_403_worth_waiting_for() {
        let mut a = answer(403, r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes."}"#);
        a.retry_after = Some("1".into());
        assert_eq!(decide(2, false, &Outcome::Answer(a.clone())), Decision::Retry(Duration::from_secs(1)));
        a.retry_after = None;
        // No header: GitHub says wait a minute, which is within bounds.
        assert_eq!(decide(1, false, &Outcome::Answer(a)), Decision::Retry(Duration::from_secs(60)));
    }

    #[test]
    fn a_read_only_token_is_final() {
        let a = answer(403, r#"{"message":"Resource not accessible by integration","status":"403"}"#);
        assert_eq!(a.rate_limit_wait(NOW), None);
        assert_eq!(decide(1, true, &Outcome::Answer(a)), Decision::GiveUp);
        assert_eq!(decide(1, true, &Outcome::Answer(answer(422, r#"{"message":"Invalid request"}"#))), Decision::GiveUp);
    }

    #[test]
    fn creates_are_never_resent_when_they_may_have_arrived() {
        assert_eq!(decide(1, false, &Outcome::MaybeSent("connection reset".into())), Decision::GiveUp);
        assert_eq!(decide(1, false, &Outcome::Answer(answer(502, "Bad Gateway"))), Decision::GiveUp);
        // Refused before sending: nothing can have been created.
        assert_eq!(decide(1, false, &Outcome::NotSent("connection refused".into())), Decision::Retry(Duration::from_secs(1)));
    }

    #[test]
    fn replayable_updates_back_off_on_server_errors() {
        assert_eq!(decide(1, true, &Outcome::Answer(answer(502, ""))), Decision::Retry(Duration::from_secs(1)));
        assert_eq!(decide(2, true, &Outcome::Answer(answer(503, ""))), Decision::Retry(Duration::from_secs(2)));
        assert_eq!(decide(3, true, &Outcome::MaybeSent("reset".into())), Decision::Retry(Duration::from_secs(4)));
        assert_eq!(decide(4, true, &Outcome::Answer(answer(503, ""))), Decision::GiveUp, "bounded attempts");
    }

    #[test]
    fn total_wait_is_bounded() {
        let mut a = answer(429, "{}");
        a.retry_after = Some("50".into());
        let p = Policy::default();
        assert_eq!(p.decide(2, Duration::from_secs(60), false, &Outcome::Answer(a.clone()), NOW), Decision::Retry(Duration::from_secs(50)));
        assert_eq!(p.decide(3, Duration::from_secs(110), false, &Outcome::Answer(a), NOW), Decision::GiveUp);
    }

    #[test]
    fn messages_come_from_the_json_body() {
        assert_eq!(
            answer(403, r#"{"message":"Resource not accessible by integration"}"#).message(),
            "Resource not accessible by integration"
        );
        assert_eq!(answer(502, "  <html>bad gateway</html> ").message(), "<html>bad gateway</html>");
    }
}
