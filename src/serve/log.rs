//! The service's log: one JSON object per line on stdout, for everything it
//! has to say while it runs (start, warnings, one line per request, drain,
//! stop), so a Kubernetes log pipeline reads every line as structured data.
//! A configuration error at start is not a log line: it is a plain message
//! on stderr and exit 2, like every command's. Request lines are built from
//! the method, path and what the handler recorded, never from headers or
//! bodies, so never from a credential.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::inspect::CacheUse;
use super::verifier::LogFields;
use super::App;

/// Writes one log line (stdout; a closed stdout loses the line, not the request).
pub fn line(value: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
}

/// An event of the service's life: `{"time", "event", ...fields}`.
pub fn event(name: &str, fields: serde_json::Value) {
    let mut value = serde_json::json!({"time": crate::clock::now_rfc3339(), "event": name});
    if let (Some(out), serde_json::Value::Object(more)) = (value.as_object_mut(), fields) {
        out.extend(more);
    }
    line(&value);
}

/// Why a request was refused, for its log line.
#[derive(Clone)]
pub struct Reason(pub String);

/// One JSON line per request: what was asked, what came of it, how long it took.
pub(super) async fn requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
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
    let mut value = serde_json::json!({
        "time": crate::clock::now_rfc3339(),
        "method": method,
        "path": path,
        "status": status,
        "durationMs": (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
    });
    if path == "/verify" {
        value["capsule"] = fields.capsule.into();
        value["outcome"] = fields.outcome.into();
        value["cache"] = match fields.cache {
            Some(CacheUse::Hit) => "hit",
            Some(CacheUse::Miss) => "miss",
            None => "none",
        }
        .into();
        if let Some(reason) = reason {
            value["reason"] = reason.into();
        }
    }
    line(&value);
    response
}
