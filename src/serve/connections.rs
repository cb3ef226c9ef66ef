//! Accepting connections, with the bounds `axum::serve` does not set.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never
//! runs: a client that sends half a request line and then nothing holds its
//! socket (and a task and a read buffer) for as long as it likes, and
//! nothing bounds how many such sockets there are. A few hundred of them
//! would take the pod's memory or its file descriptors, and with them every
//! promotion that needs a verification. So connections are served here, by
//! hyper's own HTTP/1 connection with:
//! - [`HEADER_READ_TIMEOUT`]: the request head must arrive within it; an idle
//!   keep-alive connection is closed after it too (hyper starts the clock
//!   when it waits for a head), as servers in front of Kubernetes do;
//! - [`MAX_CONNECTIONS`] open at once: the next accept waits for one to
//!   close, so new clients queue in the kernel's backlog;
//! - [`MAX_READ_BUFFER`]: what one connection may buffer of a request head.
//!
//! A slow *body* is bounded by the router's timeout layer, which runs from
//! the end of the head. On shutdown, the listener closes, idle connections
//! are closed and requests in flight run to their end (hyper's graceful
//! shutdown); [`super::shutdown`] bounds how long that may take.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::log;

/// How long a client may take to send a request head, or stay idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; with [`MAX_READ_BUFFER`] this bounds their
/// buffers to 32 MiB, an eighth of the Deployment's memory limit.
pub const MAX_CONNECTIONS: usize = 512;
/// The largest request head, in bytes (hyper's smallest allowed is 8 KiB).
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` until `stop` resolves, then lets the
/// connections finish their requests and returns.
pub async fn serve(listener: TcpListener, router: Router, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_READ_BUFFER).keep_alive(true);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: neither is the listener's end. Pause so a
                    // descriptor shortage does not become a busy loop.
                    log::event("accept-failed", serde_json::json!({"error": e.to_string()}));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Answers are small and written once: send them without Nagle's delay.
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out ends only its own connection.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::*;

    async fn started() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn half_a_request(addr: std::net::SocketAddr) -> TcpStream {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"POST /verify HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        client
    }

    async fn health(addr: std::net::SocketAddr) -> String {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    }

    // Paused time: the clock jumps to the next timer whenever every task
    // waits, so these run in milliseconds and measure virtual time.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_head_is_closed_at_the_timeout() {
        let (addr, _stop) = started().await;
        let mut slow = half_a_request(addr).await;
        let since = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(HEADER_READ_TIMEOUT * 4, slow.read_to_end(&mut rest))
            .await
            .expect("the server closes a connection whose head never ends")
            .unwrap();
        assert!(since.elapsed() >= HEADER_READ_TIMEOUT, "closed after {:?}", since.elapsed());
        assert!(health(addr).await.starts_with("HTTP/1.1 200"), "the service still answers");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_connection_bound_a_client_waits_for_a_slot_instead_of_taking_memory() {
        let (addr, _stop) = started().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(half_a_request(addr).await);
        }
        let since = Instant::now();
        let answer = health(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            since.elapsed() >= HEADER_READ_TIMEOUT,
            "answered after {:?}, while {MAX_CONNECTIONS} connections were held",
            since.elapsed()
        );
    }

    #[tokio::test]
    async fn below_the_bound_requests_are_answered_at_once_and_stop_ends_the_loop() {
        let (addr, stop) = started().await;
        for _ in 0..3 {
            assert!(health(addr).await.starts_with("HTTP/1.1 200"));
        }
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after stop");
    }
}
