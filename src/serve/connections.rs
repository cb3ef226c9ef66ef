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
//! - [`WRITE_STALL_TIMEOUT`]: a client that stops reading its answer is cut
//!   off when a write has made no progress for it (hyper's timer does not run
//!   while it writes, so without this such a client holds its slot forever).
//!
//! A slow *body* is bounded by the router's timeout layer, which runs from
//! the end of the head. On shutdown, the listener closes, idle connections
//! and those that never sent a whole request head are closed, and requests
//! in flight run to their end; [`super::shutdown`] bounds how long that may
//! take. (hyper's own graceful shutdown leaves a connection that has not
//! finished its first head open until the head timeout, past the grace bound.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::log;

/// How long a client may take to send a request head, or stay idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; with [`MAX_READ_BUFFER`] this bounds their
/// buffers to 32 MiB, an eighth of the Deployment's memory limit.
pub const MAX_CONNECTIONS: usize = 512;
/// The read buffer's bound, in bytes (hyper's smallest allowed is 8 KiB). A
/// head longer than this is refused 431, but one that arrives in a single
/// read may be accepted up to about twice this.
pub const MAX_READ_BUFFER: usize = 64 * 1024;
/// How long a write to a client may make no progress (it is not reading).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one `accept-failed` line this often, with the count since the last.
const ACCEPT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop` resolves, then lets the
/// connections finish their requests and returns.
pub async fn serve(listener: TcpListener, router: Router, stop: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, _) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_READ_BUFFER).keep_alive(true);
    let mut failures = AcceptFailures::default();
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
                    failures.record(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Answers are small and written once: send them without Nagle's delay.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(http.clone(), stream, router.clone(), closing.subscribe(), slot));
    }
    drop(listener);
    let _ = closing.send(true);
    // Each connection holds its slot to its end: all of them back means all ended.
    let all = u32::try_from(MAX_CONNECTIONS).expect("a small constant");
    let _ = slots.acquire_many(all).await;
}

/// One connection, to its end or, once `closing`, to the end of the request in flight.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    router: Router,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = Arc::clone(&started);
        hyper::service::service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            router.clone().oneshot(request)
        })
    };
    let connection = http.serve_connection(TokioIo::new(StallBound::new(stream)), service);
    tokio::pin!(connection);
    // A client that goes away or times out ends only its own connection.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = closing.wait_for(|closing| *closing) => {}
    }
    // hyper keeps a connection open that has not had a whole head yet; it has nothing to finish.
    if started.load(Ordering::Relaxed) {
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
    drop(slot);
}

/// A stream whose writes fail after [`WRITE_STALL_TIMEOUT`] without progress.
struct StallBound {
    stream: TcpStream,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallBound {
    fn new(stream: TcpStream) -> Self {
        Self { stream, stalled: None }
    }

    fn bound<T>(&mut self, cx: &mut Context<'_>, write: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.stalled = None;
            return write;
        }
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading its answer")))
    }
}

impl AsyncRead for StallBound {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallBound {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.bound(cx, write)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let write = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.bound(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flush = Pin::new(&mut self.stream).poll_flush(cx);
        self.bound(cx, flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shutdown = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.bound(cx, shutdown)
    }
}

/// Accept failures come in runs (a descriptor shortage lasts): one line per
/// [`ACCEPT_FAILURE_LOG_INTERVAL`] says so without flooding the log.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    /// Counts `error`, and logs it unless a line went out less than an interval ago; true if it did.
    fn record(&mut self, error: &io::Error) -> bool {
        self.unlogged += 1;
        if self.last_logged.is_some_and(|at| at.elapsed() < ACCEPT_FAILURE_LOG_INTERVAL) {
            return false;
        }
        log::event("accept-failed", serde_json::json!({"error": error.to_string(), "failures": self.unlogged}));
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::*;

    /// An answer larger than any socket buffers, for a client that does not read it.
    const BIG: usize = 64 << 20;

    async fn started() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let (addr, stop, _) = started_with_handle().await;
        (addr, stop)
    }

    async fn started_with_handle() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(|| async { "ok\n" })).route("/big", get(|| async { vec![b'x'; BIG] })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "done\n"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(serve(listener, router, async move {
            let _ = stopped.await;
        }));
        (addr, stop, serving)
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

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_its_answer_is_cut_off_instead_of_holding_its_slot() {
        let (addr, _stop) = started().await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(addr).await.unwrap();
        stalled.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // Not reading: the server's writes stop making progress.
        tokio::time::sleep(HEADER_READ_TIMEOUT * 4).await;
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(600), stalled.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "the connection is still open");
        assert!(received.len() < BIG, "the whole answer was kept for a client that did not read it for {:?}", HEADER_READ_TIMEOUT * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn on_stop_a_request_in_flight_is_answered_and_a_half_sent_head_does_not_hold_up_the_exit() {
        let (addr, stop, serving) = started_with_handle().await;
        let _slow_head = half_a_request(addr).await;
        let mut in_flight = TcpStream::connect(addr).await.unwrap();
        in_flight.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let since = Instant::now();
        stop.send(()).unwrap();
        let mut answer = String::new();
        in_flight.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done\n"), "{answer}");
        tokio::time::timeout(HEADER_READ_TIMEOUT, serving)
            .await
            .expect("a connection that never sent a whole head is closed at stop")
            .unwrap();
        assert!(since.elapsed() < HEADER_READ_TIMEOUT / 2, "stopped after {:?}", since.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_accept_failures_is_logged_once_per_interval_not_once_per_try() {
        let mut failures = AcceptFailures::default();
        let emfile = io::Error::from_raw_os_error(24);
        let mut lines = 0;
        // A descriptor shortage of a minute, retried every 100 ms as the loop does.
        for _ in 0..600 {
            lines += usize::from(failures.record(&emfile));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(lines, 6, "one line per {ACCEPT_FAILURE_LOG_INTERVAL:?} over a minute");
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
