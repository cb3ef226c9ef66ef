//! `release-capsule serve`: the trust chain of spec section 8 behind HTTP, for
//! Kargo's `http` step (spec section 10).
//!
//! - [`api`]: the request code-dot-org's stages send and the answer they read;
//! - [`allow`]: the repositories the service may contact;
//! - [`inspect`]: the cached part of a verification, by (repository, digest);
//! - [`verifier`]: one request, from body to answer; [`refusal`]: the answers
//!   that are not a verdict (400, 403, 502, 503);
//! - [`signatures`]: signatures found, trusted for a minute;
//! - [`metrics`]: `GET /metrics`; [`log`]: JSON lines on stdout;
//! - [`shutdown`]: SIGTERM, the drain, the bounded stop;
//! - [`connections`]: accepting, with bounds on slow and idle clients;
//!   [`stall`]: on clients that stop reading.
//!
//! This module is the HTTP edge: settings, axum routes, and tower layers
//! bounding body size and request time.

pub mod allow;
pub mod api;
pub mod connections;
pub mod inspect;
pub mod log;
pub mod metrics;
pub mod refusal;
pub mod shutdown;
pub mod signatures;
pub mod stall;
pub mod verifier;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

use self::allow::AllowList;
use self::api::VerifyResponse;
use self::inspect::InspectionCache;
use self::metrics::Metrics;
use self::shutdown::Stopping;
use self::verifier::{LogFields, Verifier};
use crate::cli::ServeArgs;
use crate::failure::{Classify, Failure, FailureKind};
use crate::registry::credentials::Credentials;
use crate::registry::{ClientOptions, OciRegistry};

/// Settings, resolved and checked once at start.
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub allow: AllowList,
    pub credentials: Credentials,
    pub max_concurrent: usize,
    pub max_body_bytes: usize,
    pub timeout: Duration,
    pub cache_entries: usize,
    pub stopping: Stopping,
    pub public_key: Option<crate::sign::keys::PublicKey>,
}

impl ServeSettings {
    pub fn resolve(args: &ServeArgs) -> Result<Self, Failure> {
        let listen: SocketAddr = args.listen.parse().map_err(|e| {
            Failure::input(anyhow::anyhow!("--listen {:?}: {e}; give an address and port such as 0.0.0.0:8080", args.listen))
        })?;
        let allow = AllowList::parse(&args.allow).or_fail(FailureKind::Input)?;
        let credentials = match &args.registry_config {
            Some(path) => {
                let (credentials, helpers) = Credentials::from_docker_config(path).or_fail(FailureKind::Input)?;
                for helper in helpers {
                    let message = format!(
                        "registry config {}: {helper} is a credential helper, which this service cannot run; only auths entries are used",
                        path.display()
                    );
                    log::event("warning", serde_json::json!({"message": message}));
                }
                credentials
            }
            None => Credentials::default(),
        };
        if args.max_concurrent == 0 {
            return Err(Failure::input(anyhow::anyhow!("--max-concurrent must be at least 1")));
        }
        if args.drain_seconds >= args.shutdown_grace_seconds {
            return Err(Failure::input(anyhow::anyhow!(
                "--drain-seconds {} must be shorter than --shutdown-grace-seconds {}: after the drain, requests in flight need time to finish",
                args.drain_seconds,
                args.shutdown_grace_seconds
            )));
        }
        Ok(Self {
            listen,
            allow,
            credentials,
            max_concurrent: args.max_concurrent,
            max_body_bytes: args.max_body_bytes,
            timeout: Duration::from_secs(args.timeout_seconds.max(1)),
            cache_entries: args.cache_entries,
            stopping: Stopping { drain: Duration::from_secs(args.drain_seconds), grace: Duration::from_secs(args.shutdown_grace_seconds) },
            public_key: args
                .public_key
                .as_deref()
                .map(|p| crate::settings::public_key_file("--public-key", p))
                .transpose()
                .or_fail(FailureKind::Input)?,
        })
    }
}

struct App {
    verifier: Verifier<OciRegistry>,
    metrics: Arc<Metrics>,
    /// Set at SIGTERM: `/readyz` answers 503 while `/verify` is still served.
    draining: Arc<AtomicBool>,
}

pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    let s = ServeSettings::resolve(args)?;
    crate::commands::block_on(serve(s))
}

async fn serve(s: ServeSettings) -> Result<(), Failure> {
    let options = ClientOptions { push: false, backoff: crate::registry::retry::Backoff::SERVICE };
    let client = OciRegistry::with_credentials(s.credentials.clone(), options).map_err(Failure::from)?;
    let metrics = Arc::new(Metrics::default());
    let app = Arc::new(App {
        verifier: Verifier {
            client,
            allow: s.allow.clone(),
            cache: InspectionCache::new(s.cache_entries),
            metrics: Arc::clone(&metrics),
            permits: Arc::new(Semaphore::new(s.max_concurrent)),
            timeout: s.timeout,
            public_key: s.public_key.clone(),
            signatures: Default::default(),
        },
        metrics,
        draining: Arc::new(AtomicBool::new(false)),
    });
    let router = router(Arc::clone(&app), &s);
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("--listen {}: cannot listen", s.listen))))?;
    let logins: Vec<&str> = s.credentials.hosts().collect();
    log::event(
        "listening",
        serde_json::json!({
            "listen": listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "allow": s.allow.describe(),
            "logins": logins,
            "maxConcurrent": s.max_concurrent,
            "maxConnections": connections::MAX_CONNECTIONS,
            "headerReadTimeoutSeconds": connections::HEADER_READ_TIMEOUT.as_secs(),
            "maxBodyBytes": s.max_body_bytes,
            "timeoutSeconds": s.timeout.as_secs(),
            "cacheEntries": s.cache_entries,
            "drainSeconds": s.stopping.drain.as_secs(),
            "shutdownGraceSeconds": s.stopping.grace.as_secs(),
            "publicKey": s.public_key.as_ref().map(|k| k.describe()),
            "version": crate::core::TOOL_VERSION,
        }),
    );
    connections::serve(listener, router, shutdown::listener_closes(Arc::clone(&app.draining), s.stopping)).await;
    log::event("stopped", serde_json::json!({"reason": "every request was answered"}));
    Ok(())
}

fn router(app: Arc<App>, s: &ServeSettings) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), log::requests))
        .layer(DefaultBodyLimit::max(s.max_body_bytes))
        // A backstop for what the handler's own timeout cannot see (a client
        // that sends its body slowly); the handler answers in JSON before it.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, s.timeout + Duration::from_secs(5)))
        .with_state(app)
}

async fn verify(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    let answer = match body {
        Ok(bytes) => app.verifier.answer(&bytes).await,
        Err(rejection) => {
            // Spec section 10 answers every malformed request 400, an oversized one included.
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "malformed request: body: is larger than this service accepts (--max-body-bytes)".to_owned()
            } else {
                format!("malformed request: body: {}", rejection.body_text())
            };
            let body = VerifyResponse::refused(reason, vec![]);
            verifier::Answer { status: StatusCode::BAD_REQUEST, body, log: LogFields { outcome: "malformed", ..LogFields::default() } }
        }
    };
    app.metrics.verification(started.elapsed());
    let mut response = (answer.status, Json(&answer.body)).into_response();
    if !answer.body.ok {
        response.extensions_mut().insert(log::Reason(answer.body.reason.clone()));
    }
    response.extensions_mut().insert(answer.log);
    response
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.verifier.cache.len());
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
