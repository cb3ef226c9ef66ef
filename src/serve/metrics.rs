//! `GET /metrics`, in the Prometheus text exposition format (version 0.0.4):
//! requests by path and status, verification latency as a histogram, cache
//! hits and misses, and what is in flight. A handful of atomics; no registry
//! library for so few series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Cumulative counts per bucket, then +Inf.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Metrics {
    pub fn request(&self, path: &'static str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((path, status)).or_default() += 1;
    }

    pub fn verification(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_buckets[BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, cache_entries: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP release_capsule_http_requests_total HTTP requests answered, by path and status.");
        let _ = writeln!(out, "# TYPE release_capsule_http_requests_total counter");
        for ((path, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "release_capsule_http_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP release_capsule_verification_duration_seconds Time to answer POST /verify.");
        let _ = writeln!(out, "# TYPE release_capsule_verification_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "release_capsule_verification_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let total = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "release_capsule_verification_duration_seconds_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "release_capsule_verification_duration_seconds_sum {sum}");
        let _ = writeln!(out, "release_capsule_verification_duration_seconds_count {total}");
        for (name, help, value) in [
            ("release_capsule_cache_hits_total", "Verifications answered from the capsule cache.", self.cache_hits.load(Ordering::Relaxed)),
            ("release_capsule_cache_misses_total", "Verifications that inspected a capsule.", self.cache_misses.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        for (name, help, value) in [
            ("release_capsule_cache_entries", "Capsules in the cache.", cache_entries as u64),
            ("release_capsule_verifications_in_flight", "Verifications running now.", self.in_flight.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_series() {
        let m = Metrics::default();
        m.request("/verify", 200);
        m.request("/verify", 200);
        m.request("/verify", 422);
        m.verification(Duration::from_millis(30));
        m.cache_hits.fetch_add(1, Ordering::Relaxed);
        let text = m.render(3);
        for line in [
            "release_capsule_http_requests_total{path=\"/verify\",status=\"200\"} 2",
            "release_capsule_http_requests_total{path=\"/verify\",status=\"422\"} 1",
            "release_capsule_verification_duration_seconds_bucket{le=\"0.025\"} 0",
            "release_capsule_verification_duration_seconds_bucket{le=\"0.05\"} 1",
            "release_capsule_verification_duration_seconds_bucket{le=\"+Inf\"} 1",
            "release_capsule_verification_duration_seconds_count 1",
            "release_capsule_cache_hits_total 1",
            "release_capsule_cache_entries 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
