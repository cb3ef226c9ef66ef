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
//! - [`MAX_CONNECTIONS`] open at once: past it, a new connection makes room
//!   by closing the oldest one that is not running a request (waiting for a
//!   head, or idle), and waits for a slot only when every one is. A probe or a
//!   promotion then never waits behind slow clients for their 30 s: to starve
//!   one, a client would have to open 512 connections in the milliseconds it
//!   takes to send its head;
//! - [`MAX_READ_BUFFER`]: what one connection may buffer of a request head;
//! - [`WRITE_STALL_TIMEOUT`]: a client that stops reading its answer is cut
//!   off when a write has made no progress for it ([`super::stall`]).
//!
//! A slow *body* is bounded by the router's timeout layer, which runs from
//! the end of the head. On shutdown, the listener closes, idle connections
//! and those that never sent a whole request head are closed, and requests
//! in flight run to their end; [`super::shutdown`] bounds how long that may
//! take. (hyper's own graceful shutdown leaves a connection that has not
//! finished its first head open until the head timeout, past the grace bound.)

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::log;
use super::stall::StallBound;
pub use super::stall::WRITE_STALL_TIMEOUT;

/// How long a client may take to send a request head, or stay idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; with [`MAX_READ_BUFFER`] this bounds their
/// buffers to 32 MiB, an eighth of the Deployment's memory limit.
pub const MAX_CONNECTIONS: usize = 512;
/// The read buffer's bound, in bytes (hyper's smallest allowed is 8 KiB). A
/// head longer than this is refused 431, but one that arrives in a single
/// read may be accepted up to about twice this.
pub const MAX_READ_BUFFER: usize = 64 * 1024;
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
    let mut open: VecDeque<Weak<Tracked>> = VecDeque::new();
    tokio::pin!(stop);
    loop {
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
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                make_room(&mut open);
                tokio::select! {
                    () = &mut stop => break,
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        // Answers are small and written once: send them without Nagle's delay.
        let _ = stream.set_nodelay(true);
        let tracked = Arc::new(Tracked::default());
        remember(&mut open, &tracked);
        tokio::spawn(connection(http.clone(), stream, router.clone(), closing.subscribe(), slot, tracked));
    }
    drop(listener);
    let _ = closing.send(true);
    // Each connection holds its slot to its end: all of them back means all ended.
    let all = u32::try_from(MAX_CONNECTIONS).expect("a small constant");
    let _ = slots.acquire_many(all).await;
}

/// What the accept loop knows of an open connection, to choose one to close.
#[derive(Default)]
struct Tracked {
    /// It has had a whole request head.
    started: AtomicBool,
    /// A request of it is being answered.
    answering: AtomicBool,
    /// Told to close, to make room for a new one.
    close: Notify,
}

/// Adds a connection to `open`, forgetting those that ended once there are
/// twice as many entries as can be open (so it stays small below the bound too).
fn remember(open: &mut VecDeque<Weak<Tracked>>, tracked: &Arc<Tracked>) {
    if open.len() >= 2 * MAX_CONNECTIONS {
        open.retain(|tracked| tracked.strong_count() > 0);
    }
    open.push_back(Arc::downgrade(tracked));
}

/// Tells the oldest open connection that is not answering a request to close.
fn make_room(open: &mut VecDeque<Weak<Tracked>>) {
    open.retain(|tracked| tracked.strong_count() > 0);
    let oldest_idle = open.iter().position(|tracked| tracked.upgrade().is_some_and(|t| !t.answering.load(Ordering::Relaxed)));
    if let Some(tracked) = oldest_idle.and_then(|at| open.remove(at)).and_then(|t| t.upgrade()) {
        tracked.close.notify_one();
    }
}

/// One connection, to its end or, once `closing` or told to make room, to
/// the end of the request in flight.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    router: Router,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
    tracked: Arc<Tracked>,
) {
    let service = {
        let tracked = Arc::clone(&tracked);
        hyper::service::service_fn(move |request| {
            tracked.started.store(true, Ordering::Relaxed);
            tracked.answering.store(true, Ordering::Relaxed);
            let answer = router.clone().oneshot(request);
            let tracked = Arc::clone(&tracked);
            async move {
                let answer = answer.await;
                tracked.answering.store(false, Ordering::Relaxed);
                answer
            }
        })
    };
    let connection = http.serve_connection(TokioIo::new(StallBound::new(stream)), service);
    tokio::pin!(connection);
    // A client that goes away or times out ends only its own connection.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = closing.wait_for(|closing| *closing) => {}
        () = tracked.close.notified() => {}
    }
    // hyper keeps a connection open that has not had a whole head yet; it has nothing to finish.
    if tracked.started.load(Ordering::Relaxed) {
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
    drop(slot);
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
    async fn past_the_connection_bound_the_oldest_idle_connection_makes_room_so_a_probe_is_answered_at_once() {
        let (addr, _stop) = started().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(half_a_request(addr).await);
        }
        let since = Instant::now();
        let answer = health(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            since.elapsed() < HEADER_READ_TIMEOUT / 10,
            "answered after {:?}, while {MAX_CONNECTIONS} connections were held",
            since.elapsed()
        );
        // The room was the oldest connection's, and only its: still at most MAX_CONNECTIONS.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(1), held[0].read_to_end(&mut rest))
            .await
            .expect("the oldest slow client was closed")
            .unwrap();
        let mut byte = [0u8; 1];
        let next = tokio::time::timeout(Duration::from_secs(1), held[1].read(&mut byte)).await;
        assert!(next.is_err(), "the next oldest is still open: {next:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_answering_a_request_is_not_closed_to_make_room() {
        let (addr, _stop) = started().await;
        let mut answering = TcpStream::connect(addr).await.unwrap();
        answering.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut held = Vec::new();
        for _ in 1..MAX_CONNECTIONS {
            held.push(half_a_request(addr).await);
        }
        // The room is a slow client's: the answering one would free its slot only at its end, 10 s on.
        let since = Instant::now();
        assert!(health(addr).await.starts_with("HTTP/1.1 200"));
        assert!(since.elapsed() < Duration::from_secs(5), "answered after {:?}", since.elapsed());
        let mut answer = String::new();
        answering.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done\n"), "{answer}");
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

    #[test]
    fn the_list_of_open_connections_forgets_those_that_ended() {
        let mut open = VecDeque::new();
        let live: Vec<_> = (0..3).map(|_| Arc::new(Tracked::default())).collect();
        for tracked in &live {
            remember(&mut open, tracked);
        }
        for _ in 0..10 * MAX_CONNECTIONS {
            remember(&mut open, &Arc::new(Tracked::default()));
        }
        assert!(open.len() <= 2 * MAX_CONNECTIONS, "{} entries", open.len());
        assert_eq!(open.iter().take(3).filter(|t| t.strong_count() > 0).count(), 3, "the live ones are kept, oldest first");
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
