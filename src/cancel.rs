//! Cancellation: SIGINT and SIGTERM as a token the flows check before every
//! write.
//!
//! Why this exists: when a job is cancelled, the Actions runner sends SIGINT,
//! then SIGTERM 7.5 s later, and kills the container at 10 s. The action runs
//! as PID 1 of its container, and the kernel does not deliver a signal to
//! PID 1 that has no handler: without one, the step would run on until the
//! kill and could be cut off between a blob upload and the tag that names it.
//! With one, a flow stops before its next write, reports the cancellation
//! and exits within [`EXIT_DEADLINE`].

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::failure::Failure;

/// How long after the signal the process may still run (the runner escalates
/// to SIGTERM at 7.5 s). Reporting after a cancellation gets less than this;
/// a watchdog ends the process at this point whatever is still running.
pub const EXIT_DEADLINE: Duration = Duration::from_millis(4500);

/// Shared by everything one command runs; cheap to clone.
#[derive(Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    /// The signal's name, set once, by the first cancellation.
    reason: Arc<OnceLock<&'static str>>,
    /// Whether a cancellation starts the exit watchdog (signals only: a test
    /// process must not be ended by it).
    watchdog: bool,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("reason", &self.reason()).finish()
    }
}

impl Cancel {
    /// A token nothing cancels but [`Cancel::cancel`] (tests, `build`).
    pub fn never() -> Self {
        Self::default()
    }

    /// A token cancelled by SIGINT or SIGTERM. Must be called inside a Tokio
    /// runtime; installing the handlers is what makes PID 1 receive them.
    pub fn on_signals() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let cancel = Self { watchdog: true, ..Self::default() };
        let handlers = signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
        match handlers {
            Ok((mut interrupt, mut terminate)) => {
                let c = cancel.clone();
                tokio::spawn(async move {
                    let name = tokio::select! {
                        _ = interrupt.recv() => "SIGINT",
                        _ = terminate.recv() => "SIGTERM",
                    };
                    c.cancel(name);
                });
            }
            Err(e) => eprintln!("warning: cannot install signal handlers ({e}); cancellation will not be noticed"),
        }
        cancel
    }

    /// Cancels with `reason` (a signal name); the first reason sticks. For a
    /// signal, starts the watchdog that ends the process at [`EXIT_DEADLINE`].
    pub fn cancel(&self, reason: &'static str) {
        if self.reason.set(reason).is_ok() && self.watchdog {
            eprintln!("{reason} received: stopping before the next write");
            std::thread::spawn(|| {
                std::thread::sleep(EXIT_DEADLINE);
                eprintln!("error: cancelled, and the remaining work did not finish in time; exiting");
                std::process::exit(i32::from(crate::failure::FailureKind::Cancelled as u8));
            });
        }
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The signal that cancelled, if any.
    pub fn reason(&self) -> Option<&'static str> {
        self.reason.get().copied()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// The error for a flow that stopped; `when` says where ("before
    /// tagging …", "while uploading …").
    pub fn failure(&self, when: &str) -> Failure {
        Failure::cancelled(anyhow::anyhow!("cancelled by {} {when}", self.reason().unwrap_or("request")))
    }

    /// `Err` when cancelled: called right before each write.
    pub fn check(&self, before: &str) -> Result<(), Failure> {
        if self.is_cancelled() {
            Err(self.failure(&format!("before {before}")))
        } else {
            Ok(())
        }
    }

    /// Runs `work` unless cancelled first; a cancellation drops it where it
    /// stands (an upload in flight is abandoned, never committed).
    pub async fn guard<T>(&self, during: &str, work: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        self.check(during)?;
        tokio::select! {
            biased;
            _ = self.cancelled() => Err(self.failure(&format!("while {during}"))),
            result = work => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[tokio::test]
    async fn a_cancelled_token_stops_work_before_and_during() {
        let c = Cancel::never();
        assert!(c.check("pushing").is_ok());
        let slow = c.guard("uploading blobs", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let c2 = c.clone();
        let canceller = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.cancel("SIGTERM");
        };
        let (result, ()) = tokio::join!(slow, canceller);
        let e = result.unwrap_err();
        assert_eq!(e.kind, FailureKind::Cancelled);
        assert_eq!(e.to_string(), "cancelled by SIGTERM while uploading blobs");
        assert_eq!(c.check("the tag").unwrap_err().to_string(), "cancelled by SIGTERM before the tag");
    }
}
