//! `release-capsule serve`: the trust chain of spec section 8 behind HTTP, for
//! Kargo's `http` step (spec section 10).
//!
//! - [`api`]: the request code-dot-org's stages send and the answer they read;
//! - [`allow`]: the repositories the service may contact;
//! - [`inspect`]: the per-digest, cached part of a verification;
//! - [`verifier`]: one request, from body to answer;
//! - [`metrics`]: `GET /metrics`.
//!
//! This module is the HTTP edge: axum routes, tower layers bounding body size
//! and request time, one JSON log line per request (never a header, so never a
//! credential), and a graceful stop on SIGTERM: stop accepting, finish what is
//! in flight (up to `--shutdown-grace-seconds`), exit.

pub mod allow;
pub mod api;
pub mod inspect;
pub mod metrics;
pub mod verifier;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

use self::allow::AllowList;
use self::api::VerifyResponse;
use self::inspect::{CacheUse, InspectionCache};
use self::metrics::Metrics;
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
    pub shutdown_grace: Duration,
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
                    eprintln!("warning: registry config {}: {helper} is a credential helper, which this service cannot run; only auths entries are used", path.display());
                }
                credentials
            }
            None => Credentials::default(),
        };
        if args.max_concurrent == 0 {
            return Err(Failure::input(anyhow::anyhow!("--max-concurrent must be at least 1")));
        }
        Ok(Self {
            listen,
            allow,
            credentials,
            max_concurrent: args.max_concurrent,
            max_body_bytes: args.max_body_bytes,
            timeout: Duration::from_secs(args.timeout_seconds.max(1)),
            cache_entries: args.cache_entries,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
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
    draining: AtomicBool,
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
            permits: Semaphore::new(s.max_concurrent),
            timeout: s.timeout,
            public_key: s.public_key.clone(),
            signed: Default::default(),
        },
        metrics,
        draining: AtomicBool::new(false),
    });
    let router = router(Arc::clone(&app), &s);
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("--listen {}: cannot listen", s.listen))))?;
    let logins: Vec<&str> = s.credentials.hosts().collect();
    log_line(&serde_json::json!({
        "event": "listening",
        "listen": listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "allow": s.allow.describe(),
        "logins": logins,
        "maxConcurrent": s.max_concurrent,
        "maxBodyBytes": s.max_body_bytes,
        "timeoutSeconds": s.timeout.as_secs(),
        "cacheEntries": s.cache_entries,
        "publicKey": s.public_key.as_ref().map(|k| k.describe()),
        "version": crate::core::TOOL_VERSION,
    }));
    let stopping = Arc::clone(&app);
    let grace = s.shutdown_grace;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let signal = shutdown_signal().await;
            stopping.draining.store(true, Ordering::SeqCst);
            log_line(&serde_json::json!({"event": "draining", "signal": signal, "graceSeconds": grace.as_secs()}));
            // Requests still running after the grace period are cut off.
            std::thread::spawn(move || {
                std::thread::sleep(grace);
                log_line(&serde_json::json!({"event": "exit", "reason": "shutdown grace period over"}));
                std::process::exit(0);
            });
        })
        .await
        .or_fail(FailureKind::Failed)?;
    log_line(&serde_json::json!({"event": "stopped"}));
    Ok(())
}

fn router(app: Arc<App>, s: &ServeSettings) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), log_requests))
        .layer(DefaultBodyLimit::max(s.max_body_bytes))
        // A backstop for what the handler's own timeout cannot see (a client
        // that sends its body slowly); the handler answers in JSON before it.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, s.timeout + Duration::from_secs(5)))
        .with_state(app)
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
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
        response.extensions_mut().insert(Reason(answer.body.reason.clone()));
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

#[derive(Clone)]
struct Reason(String);

/// One JSON line per request: what was asked, what came of it, how long it
/// took. Built from the method, path and what the handler recorded, never
/// from headers or bodies.
async fn log_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path: &'static str = match request.uri().path() {
        "/verify" => "/verify",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16();
    app.metrics.request(path, status);
    let fields = response.extensions().get::<LogFields>().cloned().unwrap_or_default();
    let reason = response.extensions().get::<Reason>().map(|r| r.0.clone());
    let mut line = serde_json::json!({
        "time": crate::clock::now_rfc3339(),
        "method": method,
        "path": path,
        "status": status,
        "durationMs": (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
    });
    if path == "/verify" {
        line["capsule"] = fields.capsule.into();
        line["outcome"] = fields.outcome.into();
        line["cache"] = match fields.cache {
            Some(CacheUse::Hit) => "hit",
            Some(CacheUse::Miss) => "miss",
            None => "none",
        }
        .into();
        if let Some(reason) = reason {
            line["reason"] = reason.into();
        }
    }
    log_line(&line);
    response
}

fn log_line(value: &serde_json::Value) {
    println!("{value}");
}
