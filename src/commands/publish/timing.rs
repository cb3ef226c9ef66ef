//! The spec-mandated steps of a publish (the image's build date, spec section
//! 5; for each tag, section 7's race protocol: the claim mark that tells
//! which run's PUT made the tag, the re-check, the read-back, the settle delay
//! and the confirming read), timed into the debug log. A slow publish then
//! shows which part was the protocol's and which the work's; bench/publish.py
//! reads these lines to compare the rest with Helm's push.

use std::future::Future;
use std::time::{Duration, Instant};

use super::debug;

/// Runs one spec-mandated step and logs its time.
pub(super) async fn mandated<T>(step: &str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    log(step, started.elapsed());
    out
}

/// Logs the time a spec-mandated step added to the run.
pub(super) fn log(step: &str, took: Duration) {
    debug(&format!("spec-mandated {step}: {:.1} ms", took.as_secs_f64() * 1000.0));
}

/// What a step of `step` inside work that finished at `done` added to a run
/// that also waited for other work finishing at `other_done` (times from one
/// start): without the step the run would have waited until the later of
/// `done - step` and `other_done`.
pub(super) fn on_critical_path(step: Duration, done: Duration, other_done: Duration) -> Duration {
    done.max(other_done) - done.saturating_sub(step).max(other_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_part_of_a_step_that_others_did_not_cover_counts() {
        let ms = Duration::from_millis;
        // The other work finished first: all of the step was waited for.
        assert_eq!(on_critical_path(ms(5), ms(20), ms(10)), ms(5));
        // The other work finished during the step: only the part after it.
        assert_eq!(on_critical_path(ms(5), ms(20), ms(17)), ms(3));
        // The other work finished last: the step cost nothing.
        assert_eq!(on_critical_path(ms(5), ms(20), ms(30)), ms(0));
    }
}
