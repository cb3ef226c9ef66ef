//! The one way requests leave [`OciRegistry`]: credentials for the registry's
//! own origin, a timeout, retries with backoff, and read-after-write lag.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};

use super::answers::{protocol, read_text};
use super::{OciRegistry, CALL_TIMEOUT, RETRY_WINDOW};
use crate::core::ident::Repository;
use crate::registry::auth::Access;
use crate::registry::endpoint;
use crate::registry::retry::{self, Jitter};
use crate::registry::RegistryError;

/// When a "not found" answer means "not yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    No,
    /// 404 for something this client just wrote.
    NotFound,
    /// A manifest PUT answered "blob unknown" for blobs just pushed.
    BlobUnknown,
}

/// One logical request; [`OciRegistry::send`] may make it several times.
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) url: String,
    pub(super) repo: &'a Repository,
    pub(super) access: Access,
    /// What the request is about, for messages: `repo:tag`, `repo@digest`.
    pub(super) what: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Bytes>,
    pub(super) timeout: Option<Duration>,
    pub(super) settle: Settle,
    pub(super) auth: CallAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallAuth {
    /// Whatever the registry asked for (Basic or a bearer token), answering 401s.
    Registry,
    /// A token endpoint: the user's credentials as Basic, or nothing.
    TokenService,
}

impl<'a> Call<'a> {
    pub(super) fn new(method: Method, url: String, repo: &'a Repository, access: Access, what: String) -> Self {
        Self {
            method,
            url,
            repo,
            access,
            what,
            headers: HeaderMap::new(),
            body: None,
            timeout: Some(CALL_TIMEOUT),
            settle: Settle::No,
            auth: CallAuth::Registry,
        }
    }
    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
    pub(super) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// Credentials for one request.
pub(super) enum Authz {
    None,
    Basic(String, String),
    Bearer(String),
}

pub(super) enum Attempt {
    Done(Response),
    /// Try again; when out of tries, `last` (if any) is the answer.
    Retry {
        why: String,
        retry_after: Option<Duration>,
        last: Option<Result<Response, RegistryError>>,
    },
}

impl OciRegistry {
    /// Sends `call` with the credentials its registry wants, answering one
    /// 401 challenge; retries happen inside. An error is final.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut answered_challenge = false;
        loop {
            let authz = match call.auth {
                CallAuth::Registry => self.authorization(call).await?,
                // Token requests go through send_raw with what fetch_token
                // decided to send; nothing is added for them here.
                CallAuth::TokenService => Authz::None,
            };
            let pass_401 = call.auth == CallAuth::Registry && !answered_challenge;
            let resp = self.send_raw(call, &authz, pass_401).await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                answered_challenge = true;
                if self.answer_challenge(&resp, call, &authz).await? {
                    continue;
                }
                return Err(self.denied(call, 401));
            }
            return Ok(resp);
        }
    }

    /// The retry loop around one request with fixed credentials. A 401 comes
    /// back as an answer when `pass_401` (the caller will answer the challenge).
    pub(super) async fn send_raw(&self, call: &Call<'_>, authz: &Authz, pass_401: bool) -> Result<Response, RegistryError> {
        let registry = call.repo.registry();
        let origin = endpoint::origin(registry);
        let mut jitter = Jitter::new(self.jitter_seed.fetch_add(1, Ordering::Relaxed));
        let mut attempt = 0u32;
        let started = tokio::time::Instant::now();
        loop {
            let mut rb = self.http.client_for(&call.url)?.request(call.method.clone(), &call.url).headers(call.headers.clone());
            if let Some(t) = call.timeout {
                rb = rb.timeout(t);
            }
            rb = match &call.body {
                Some(b) => rb.body(b.clone()),
                None if matches!(call.method, Method::POST | Method::PUT | Method::PATCH) => rb.header(CONTENT_LENGTH, "0"),
                None => rb,
            };
            // Credentials go to the registry's own origin (or the token service
            // the registry named) only, never to a storage redirect.
            if call.auth == CallAuth::TokenService || endpoint::same_origin(&call.url, &origin) {
                rb = match authz {
                    Authz::None => rb,
                    Authz::Basic(u, p) => rb.basic_auth(u, Some(p)),
                    Authz::Bearer(t) => rb.bearer_auth(t),
                };
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = match rb.send().await {
                Ok(r) if pass_401 && r.status() == StatusCode::UNAUTHORIZED => return Ok(r),
                other => other,
            };
            match self.classify(result, call).await? {
                Attempt::Done(resp) => return Ok(resp),
                Attempt::Retry { why, retry_after, last } => {
                    let delay = self.options.backoff.delay(attempt, retry_after, &mut jitter);
                    if !self.options.backoff.allows_retry_after(attempt) || started.elapsed() + delay > RETRY_WINDOW {
                        return match last {
                            Some(answer) => answer,
                            None => Err(self.unreachable(
                                registry,
                                format!(
                                    "{} {}: no usable answer after {} attempts (last: {why}); check that the registry is up and reachable, then re-run",
                                    call.method,
                                    call.what,
                                    attempt + 1
                                ),
                                None,
                            )),
                        };
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Sorts one answer into done, retry, or a final error.
    async fn classify(&self, result: reqwest::Result<Response>, call: &Call<'_>) -> Result<Attempt, RegistryError> {
        let resp = match result {
            Ok(r) => r,
            Err(e) if e.is_builder() || e.is_redirect() => {
                return Err(self.unreachable(call.repo.registry(), format!("{} {}: the request failed", call.method, call.what), Some(e)))
            }
            Err(e) => {
                // Timeouts, refused or dropped connections: the registry may come back.
                let why = format!("{:#}", anyhow::Error::new(e));
                return Ok(Attempt::Retry { why, retry_after: None, last: None });
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(self.denied(call, status));
        }
        if retry::is_transient_status(status) {
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::clock::parse_retry_after(v, crate::clock::now_unix()));
            return Ok(Attempt::Retry { why: format!("HTTP {status}"), retry_after, last: None });
        }
        match (call.settle, status) {
            (Settle::NotFound, 404) => Ok(Attempt::Retry { why: "not found yet".into(), retry_after: None, last: Some(Ok(resp)) }),
            (Settle::BlobUnknown, 400 | 404) => {
                let text = read_text(resp).await;
                if text.contains("BLOB_UNKNOWN") {
                    let err = protocol(&call.what, status, &text);
                    Ok(Attempt::Retry { why: "blob unknown (registry still settling)".into(), retry_after: None, last: Some(Err(err)) })
                } else {
                    Err(protocol(&call.what, status, &text))
                }
            }
            _ => Ok(Attempt::Done(resp)),
        }
    }
}
