//! Stopping without dropping a request (spec section 10). On SIGTERM (or
//! SIGINT):
//! 1. `/readyz` answers 503 at once, so Kubernetes takes the pod out of its
//!    Service, while `/verify` keeps being served for `--drain-seconds`:
//!    endpoints reach every node's proxy with some delay, and a request routed
//!    here meanwhile must still be answered;
//! 2. then the listener closes, idle connections are closed, and requests in
//!    flight run to their end;
//! 3. the process exits 0, at the latest `--shutdown-grace-seconds` after the
//!    signal (requests still running then are cut off), which is set below the
//!    pod's `terminationGracePeriodSeconds`.
//!
//! SIGINT (Ctrl-C at a terminal) skips the drain: nothing routes to a
//! process someone is stopping by hand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::log;

/// The two bounds, both counted from the signal.
#[derive(Debug, Clone, Copy)]
pub struct Stopping {
    /// Keep serving this long after the signal.
    pub drain: Duration,
    /// Exit at the latest this long after the signal.
    pub grace: Duration,
}

async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}

/// Resolves when the listener is to close: the signal, then the drain.
/// `draining` turns true at the signal (what `/readyz` reads).
pub async fn listener_closes(draining: Arc<AtomicBool>, s: Stopping) {
    let signal = signal().await;
    draining.store(true, Ordering::SeqCst);
    let drain = if signal == "SIGINT" { Duration::ZERO } else { s.drain };
    log::event("draining", serde_json::json!({"signal": signal, "drainSeconds": drain.as_secs(), "graceSeconds": s.grace.as_secs()}));
    // The hard bound runs on its own thread, so nothing in the runtime can hold it up.
    let grace = s.grace;
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        log::event("exit", serde_json::json!({"reason": "shutdown grace period over; requests still running were cut off"}));
        std::process::exit(0);
    });
    tokio::time::sleep(drain).await;
    log::event("closing", serde_json::json!({"reason": "drain period over; finishing the requests in flight"}));
}
