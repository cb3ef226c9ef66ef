//! The real [`RegistryClient`]: the OCI distribution API spoken directly over
//! reqwest.
//!
//! Why not oci-client: its errors drop status codes and headers
//! (no `Retry-After`, no `Location` of a half-done upload), it re-serializes
//! manifests, it does not retry, and its token exchange cannot be given the
//! same timeouts. Every request here goes through one function, [`OciRegistry::send`],
//! which
//! - attaches credentials for the registry's own origin only (never for a
//!   storage redirect or a foreign upload location) and answers 401
//!   challenges (see [`super::auth`]);
//! - puts a timeout on the request (connect, idle read, and a total for
//!   everything but blob downloads, which may be large and only get the idle one;
//!   the HTTP clients are in [`super::transport`]);
//! - retries 429, 5xx, timeouts and dropped connections with capped
//!   exponential backoff, honouring `Retry-After` ([`super::retry`]);
//! - rides out read-after-write lag: right after this client pushed something,
//!   a "not found" for it, or a manifest PUT answered "blob unknown", is retried
//!   too (GHCR is eventually consistent);
//! - counts itself, so benchmarks and `--json` can report requests made.
//!
//! Blob uploads are chunked (at most 4 MiB per request, GHCR's limit), read
//! from disk a chunk at a time with positioned reads (so a blob inside a tar is
//! uploaded from its offset), and hashed on the way: a layout whose blob does
//! not match its digest is reported before the upload is committed. A chunk
//! that fails is sent again; if the registry lost track of the upload (404,
//! 416, or an invalid upload state after a dropped answer), the upload starts
//! over in a new session.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::auth::{self, Access, AuthCache, Challenge};
use super::endpoint;
use super::retry::{self, Backoff, Jitter};
use super::transport::Transport;
use super::{FetchedManifest, RegistryClient, RegistryError};
use crate::core::ident::{Digest, Repository};
use crate::settings::RegistryCredentials;

/// GHCR rejects PATCH bodies over 4 MiB (spec section 7).
pub const MAX_CHUNK: u64 = 4 * 1024 * 1024;
/// Manifests and indexes are small; containerd refuses more than 4 MiB too.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Whole-request limits (connect and idle-read limits are the transport's): API calls, and one upload chunk (4 MiB at a slow 30 KiB/s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CHUNK_TIMEOUT: Duration = Duration::from_secs(150);
/// No new try starts this long after the first: a registry that hangs
/// instead of failing fast must not hold a run for attempts × timeout.
const RETRY_WINDOW: Duration = Duration::from_secs(180);
/// Upload sessions started for one blob before giving up on it.
const MAX_UPLOAD_SESSIONS: u32 = 3;
/// Fresh downloads of one blob after its body broke off mid-way.
const MAX_BODY_TRIES: u32 = 3;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// How a client is set up.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Ask for push tokens from the first request on (publish), so a run that
    /// reads then writes a repository fetches one token, not two.
    pub push: bool,
    pub backoff: Backoff,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { push: false, backoff: Backoff::DEFAULT }
    }
}

pub struct OciRegistry {
    http: Transport,
    credentials: Option<(String, String)>,
    auth: AuthCache,
    options: ClientOptions,
    requests: AtomicU64,
    jitter_seed: AtomicU64,
    /// `repo@digest` and `repo:tag` this client wrote: a 404 for them is lag.
    written: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistry")
            .field("authenticated", &self.credentials.is_some())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

/// When a "not found" answer means "not yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    No,
    /// 404 for something this client just wrote.
    NotFound,
    /// A manifest PUT answered "blob unknown" for blobs just pushed.
    BlobUnknown,
}

/// One logical request; [`OciRegistry::send`] may make it several times.
struct Call<'a> {
    method: Method,
    url: String,
    repo: &'a Repository,
    access: Access,
    /// What the request is about, for messages: `repo:tag`, `repo@digest`.
    what: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout: Option<Duration>,
    settle: Settle,
    auth: CallAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallAuth {
    /// Whatever the registry asked for (Basic or a bearer token), answering 401s.
    Registry,
    /// A token endpoint: the user's credentials as Basic, or nothing.
    TokenService,
}

impl<'a> Call<'a> {
    fn new(method: Method, url: String, repo: &'a Repository, access: Access, what: String) -> Self {
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
    fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
    fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// Credentials for one request.
enum Authz {
    None,
    Basic(String, String),
    Bearer(String),
}

enum Attempt {
    Done(Response),
    /// Try again; when out of tries, `last` (if any) is the answer.
    Retry {
        why: String,
        retry_after: Option<Duration>,
        last: Option<Result<Response, RegistryError>>,
    },
}

/// A blob to upload: `size` bytes of a file from `offset` (a layout blob,
/// maybe inside a tar), opened once for all of the blob's upload sessions.
struct BlobFile {
    file: Arc<File>,
    path: String,
    offset: u64,
    size: u64,
}

impl BlobFile {
    fn open(path: &Path, offset: u64, size: u64) -> Result<Self, RegistryError> {
        let file = File::open(path).map_err(|e| RegistryError::Local {
            path: path.display().to_string(),
            message: "cannot be opened".into(),
            source: Some(e),
        })?;
        Ok(Self { file: Arc::new(file), path: path.display().to_string(), offset, size })
    }

    /// Bytes `start..start+len` of the blob, and the hasher fed with them.
    async fn chunk(&self, start: u64, len: u64, mut hasher: Sha256) -> Result<(Bytes, Sha256), RegistryError> {
        let (file, pos, path) = (Arc::clone(&self.file), self.offset + start, self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, pos).map_err(|e| RegistryError::Local {
                path: path.clone(),
                message: format!("cannot read {len} bytes at offset {pos}"),
                source: Some(e),
            })?;
            hasher.update(&buf);
            Ok((Bytes::from(buf), hasher))
        })
        .await
        .map_err(|e| RegistryError::Local {
            path: self.path.clone(),
            message: format!("reader task failed: {e}"),
            source: None,
        })?
    }

    fn describe(&self) -> String {
        if self.offset > 0 {
            format!("{} (at offset {})", self.path, self.offset)
        } else {
            self.path.clone()
        }
    }
}

enum SessionError {
    /// The registry lost the upload; a new session may work.
    Restart(String),
    Fatal(RegistryError),
}

impl From<RegistryError> for SessionError {
    fn from(e: RegistryError) -> Self {
        SessionError::Fatal(e)
    }
}

impl OciRegistry {
    pub fn new(credentials: &RegistryCredentials, options: ClientOptions) -> Result<Self, RegistryError> {
        let http = Transport::new()?;
        let credentials = match (&credentials.username, &credentials.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            // A token alone works as the password for GHCR (any user name).
            (None, Some(p)) => Some(("release-capsule".to_owned(), p.clone())),
            _ => None,
        };
        Ok(Self {
            http,
            credentials,
            auth: AuthCache::default(),
            options,
            requests: AtomicU64::new(0),
            jitter_seed: AtomicU64::new(0),
            written: Mutex::new(HashSet::new()),
        })
    }

    /// HTTP requests sent so far (token requests and retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn api(repo: &Repository, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", endpoint::origin(repo.registry()), repo.path())
    }

    fn remember(&self, key: String) {
        if let Ok(mut w) = self.written.lock() {
            w.insert(key);
        }
    }

    fn wrote(&self, key: &str) -> bool {
        self.written.lock().is_ok_and(|w| w.contains(key))
    }

    /// `what` is a [`named`] reference: was it written by this client?
    fn settle_for(&self, what: &str) -> Settle {
        if self.wrote(what) {
            Settle::NotFound
        } else {
            Settle::No
        }
    }

    fn unreachable(&self, registry: &str, message: String, source: Option<reqwest::Error>) -> RegistryError {
        RegistryError::Unreachable {
            registry: registry.to_owned(),
            message,
            source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        }
    }

    fn denied(&self, call: &Call<'_>, status: u16) -> RegistryError {
        let repo = call.repo.to_string();
        let hint = auth::denied_hint(call.repo.registry(), &repo, call.access, self.credentials.is_some());
        RegistryError::Denied { reference: call.what.clone(), status, hint }
    }

    /// Sends `call` with the credentials its registry wants, answering one
    /// 401 challenge; retries happen inside. An error is final.
    async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut answered_challenge = false;
        loop {
            let authz = match call.auth {
                CallAuth::Registry => self.authorization(call).await?,
                CallAuth::TokenService => self.basic(),
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
    async fn send_raw(&self, call: &Call<'_>, authz: &Authz, pass_401: bool) -> Result<Response, RegistryError> {
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

    /// The user's credentials as Basic, or none.
    fn basic(&self) -> Authz {
        self.credentials.clone().map_or(Authz::None, |(u, p)| Authz::Basic(u, p))
    }

    /// What the registry host asked for: Basic credentials or a bearer token.
    async fn authorization(&self, call: &Call<'_>) -> Result<Authz, RegistryError> {
        match self.auth.host(call.repo.registry()) {
            None => Ok(Authz::None),
            Some(Challenge::Basic) => Ok(self.basic()),
            Some(Challenge::Bearer { realm, service }) => {
                let repo = call.repo.to_string();
                match self.auth.token(&repo, call.access) {
                    Some(t) => Ok(Authz::Bearer(t)),
                    None => Ok(Authz::Bearer(self.fetch_token(call, &realm, service.as_deref()).await?)),
                }
            }
        }
    }

    /// Learns from a 401's challenge; true when a retry with credentials may
    /// work. `sent` is what this request carried: what other requests learnt
    /// meanwhile (they run in parallel) does not decide for this one.
    async fn answer_challenge(&self, resp: &Response, call: &Call<'_>, sent: &Authz) -> Result<bool, RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        let Some(challenge) = challenges.into_iter().next() else {
            return Ok(false);
        };
        let registry = call.repo.registry();
        let repo = call.repo.to_string();
        self.auth.set_host(registry, challenge.clone());
        match challenge {
            Challenge::Basic => Ok(self.credentials.is_some() && !matches!(sent, Authz::Basic(..))),
            Challenge::Bearer { realm, service } => {
                // A token we sent was refused (expired): fetch a fresh one.
                self.auth.drop_token(&repo, call.access);
                self.fetch_token(call, &realm, service.as_deref()).await?;
                Ok(true)
            }
        }
    }

    /// The token exchange: GET realm?scope=…&service=… with Basic credentials
    /// (or none, for an anonymous pull).
    async fn fetch_token(&self, call: &Call<'_>, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let access = if self.options.push && self.credentials.is_some() { Access::Push } else { call.access };
        let repo = call.repo.to_string();
        let realm_host = realm.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
        let secure = realm.starts_with("https://") || (realm.starts_with("http://") && endpoint::is_loopback(realm_host));
        if !secure {
            return Err(protocol(
                &call.what,
                401,
                &format!("the registry sent its token endpoint as {realm:?}; credentials only go to https:// token endpoints"),
            ));
        }
        let mut url = endpoint::with_query(realm, "scope", &access.scope(call.repo.path()));
        if let Some(s) = service {
            url = endpoint::with_query(&url, "service", s);
        }
        let mut token_call = Call::new(Method::GET, url, call.repo, access, format!("token for {repo}"));
        token_call.auth = CallAuth::TokenService;
        let authz = self.basic();
        let resp = self.send_raw(&token_call, &authz, false).await.map_err(|e| match e {
            RegistryError::Denied { status, .. } => RegistryError::Denied {
                reference: repo.clone(),
                status,
                hint: format!(
                    "the token service refused the credentials; {}",
                    auth::denied_hint(call.repo.registry(), &repo, access, self.credentials.is_some())
                ),
            },
            other => other,
        })?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, 1024 * 1024, &token_call.what).await?;
        if status != 200 {
            return Err(protocol(&token_call.what, status, &String::from_utf8_lossy(&body)));
        }
        let token = auth::token_from_response(&body)
            .ok_or_else(|| protocol(&token_call.what, status, "the token service answered without a token"))?;
        self.auth.set_token(&repo, access, token.clone());
        Ok(token)
    }

    /// GET with a bounded body, fetched again if the body breaks off.
    async fn get_small(&self, call: &Call<'_>, max: u64) -> Result<Option<(HeaderMap, Vec<u8>)>, RegistryError> {
        let mut tries = 0;
        loop {
            let resp = self.send(call).await?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Ok(None);
            }
            if status != 200 {
                return Err(protocol(&call.what, status, &read_text(resp).await));
            }
            let headers = resp.headers().clone();
            match read_limited(resp, max, &call.what).await {
                Ok(body) => return Ok(Some((headers, body))),
                Err(RegistryError::Unreachable { .. }) if tries + 1 < MAX_BODY_TRIES => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn upload(&self, repo: &Repository, digest: &Digest, blob: BlobFile) -> Result<(), RegistryError> {
        let what = format!("{repo}@{digest}");
        let mut last = String::new();
        for _ in 0..MAX_UPLOAD_SESSIONS {
            match self.upload_session(repo, digest, &blob, &what).await {
                Ok(()) => {
                    self.remember(what);
                    return Ok(());
                }
                Err(SessionError::Restart(why)) => last = why,
                Err(SessionError::Fatal(e)) => return Err(e),
            }
        }
        Err(RegistryError::Protocol {
            reference: what,
            status: 0,
            message: format!("the upload failed {MAX_UPLOAD_SESSIONS} times over (last: {last})"),
        })
    }

    /// POST, then PATCH chunks (or one PUT with the body for a small blob), then PUT ?digest=.
    async fn upload_session(&self, repo: &Repository, digest: &Digest, src: &BlobFile, what: &str) -> Result<(), SessionError> {
        let size = src.size;
        let origin = endpoint::origin(repo.registry());
        let start = Call::new(Method::POST, Self::api(repo, "blobs/uploads/"), repo, Access::Push, what.to_owned());
        let resp = self.send(&start).await?;
        let status = resp.status().as_u16();
        if status != 202 {
            return Err(SessionError::Fatal(protocol(what, status, &read_text(resp).await)));
        }
        let mut location =
            location_of(&resp, &origin).ok_or_else(|| protocol(what, status, "the upload started without a Location header"))?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut final_body = None;
        if size <= MAX_CHUNK {
            let (chunk, h) = src.chunk(0, size, hasher).await?;
            hasher = h;
            final_body = Some(chunk);
        } else {
            while offset < size {
                let len = MAX_CHUNK.min(size - offset);
                let (chunk, h) = src.chunk(offset, len, hasher).await?;
                hasher = h;
                let mut patch = Call::new(Method::PATCH, location.clone(), repo, Access::Push, what.to_owned())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, &format!("{offset}-{}", offset + len - 1))
                    .body(chunk);
                patch.timeout = Some(CHUNK_TIMEOUT);
                let resp = self.send(&patch).await?;
                match resp.status().as_u16() {
                    202 | 204 => {}
                    s @ (400 | 404 | 416) => return Err(SessionError::Restart(format!("PATCH answered {s}: {}", read_text(resp).await))),
                    s => return Err(SessionError::Fatal(protocol(what, s, &read_text(resp).await))),
                }
                if let Some(next) = location_of(&resp, &origin) {
                    location = next;
                }
                offset += len;
            }
        }
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(SessionError::Fatal(RegistryError::Local {
                path: src.describe(),
                message: format!("the content hashes to {actual}, not the {digest} its descriptor names; the image layout is corrupt"),
                source: None,
            }));
        }
        let mut put =
            Call::new(Method::PUT, endpoint::with_query(&location, "digest", digest.as_str()), repo, Access::Push, what.to_owned())
                .header(CONTENT_TYPE, "application/octet-stream");
        if let Some(body) = final_body {
            put = put.body(body);
            put.timeout = Some(CHUNK_TIMEOUT);
        }
        let resp = self.send(&put).await?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            s @ (404 | 416) => Err(SessionError::Restart(format!("PUT answered {s}: {}", read_text(resp).await))),
            s @ 400 => {
                let text = read_text(resp).await;
                if text.contains("BLOB_UPLOAD_INVALID") || text.contains("BLOB_UPLOAD_UNKNOWN") {
                    Err(SessionError::Restart(format!("PUT answered {s}: {text}")))
                } else {
                    Err(SessionError::Fatal(protocol(what, s, &text)))
                }
            }
            s => Err(SessionError::Fatal(protocol(what, s, &read_text(resp).await))),
        }
    }

    /// The download of one blob into `dest`, hashed and bounded as it arrives.
    async fn download(&self, call: &Call<'_>, digest: &Digest, max_size: u64, dest: &Path) -> Result<(Digest, u64), RegistryError> {
        let local =
            |message: String, source: Option<std::io::Error>| RegistryError::Local { path: dest.display().to_string(), message, source };
        let mut tries = 0;
        loop {
            let mut resp = self.send(call).await?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(protocol(&call.what, status, &read_text(resp).await));
            }
            if resp.content_length().is_some_and(|n| n > max_size) {
                return Err(too_large(&call.what, max_size));
            }
            let mut file = tokio::fs::File::create(dest).await.map_err(|e| local("cannot be created".into(), Some(e)))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let outcome: Result<(), RegistryError> = async {
                loop {
                    let chunk = match resp.chunk().await {
                        Ok(Some(c)) => c,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            return Err(self.unreachable(call.repo.registry(), format!("{}: the download broke off", call.what), Some(e)))
                        }
                    };
                    size += chunk.len() as u64;
                    if size > max_size {
                        return Err(too_large(&call.what, max_size));
                    }
                    hasher.update(&chunk);
                    file.write_all(&chunk).await.map_err(|e| local("cannot be written".into(), Some(e)))?;
                }
            }
            .await;
            let outcome = match outcome {
                Ok(()) => file.flush().await.map_err(|e| local("cannot be written".into(), Some(e))),
                e => e,
            };
            drop(file);
            match outcome {
                Ok(()) => {
                    let actual = Digest::from_hasher(hasher);
                    if &actual != digest {
                        let _ = tokio::fs::remove_file(dest).await;
                        return Err(RegistryError::Integrity {
                            reference: call.what.clone(),
                            message: format!("the registry sent content that hashes to {actual}, not {digest}"),
                        });
                    }
                    return Ok((actual, size));
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(dest).await;
                    if matches!(e, RegistryError::Unreachable { .. }) && tries + 1 < MAX_BODY_TRIES {
                        tries += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// `repo:tag` or `repo@digest`, as messages and the written-set name references.
fn named(repo: &Repository, reference: &str) -> String {
    if reference.contains(':') {
        format!("{repo}@{reference}")
    } else {
        repo.with_tag(reference)
    }
}

fn location_of(resp: &Response, origin: &str) -> Option<String> {
    resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(|l| endpoint::resolve_location(origin, l))
}

fn too_large(what: &str, max: u64) -> RegistryError {
    RegistryError::Integrity { reference: what.to_owned(), message: format!("larger than the {max}-byte limit") }
}

/// The registry's own words (`errors[].message` of the distribution spec), else the body's start.
fn protocol(what: &str, status: u16, body: &str) -> RegistryError {
    RegistryError::Protocol { reference: what.to_owned(), status, message: error_message(body) }
}

pub(crate) fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e.errors.iter().map(|i| format!("{} {}", i.code, i.message).trim().to_owned()).collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(no details)".into()
    } else {
        t.chars().take(300).collect()
    }
}

async fn read_text(resp: Response) -> String {
    read_limited(resp, 64 * 1024, "").await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

async fn read_limited(mut resp: Response, max: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large(what, max));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (out.len() + c.len()) as u64 > max {
                    return Err(too_large(what, max));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Unreachable {
                    registry: what.to_owned(),
                    message: "the answer broke off".into(),
                    source: Some(Box::new(e)),
                })
            }
        }
    }
}

fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers.get(DOCKER_CONTENT_DIGEST).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

fn media_type_of(headers: &HeaderMap, bytes: &[u8]) -> String {
    let from_header = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
    match from_header.filter(|t| !t.is_empty() && t != "application/json" && t != "application/octet-stream") {
        Some(t) => t,
        None => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_default(),
    }
}

impl RegistryClient for OciRegistry {
    async fn resolve(&self, repo: &Repository, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let what = named(repo, reference);
        let mut call = Call::new(Method::HEAD, Self::api(repo, &format!("manifests/{reference}")), repo, Access::Pull, what.clone())
            .header(ACCEPT, MANIFEST_ACCEPT);
        call.settle = self.settle_for(&what);
        let resp = self.send(&call).await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => match header_digest(resp.headers()) {
                Some(d) => Ok(Some(d)),
                // Not every registry sends the header on HEAD: hash the body.
                None => Ok(self.manifest(repo, reference).await?.map(|m| m.digest)),
            },
            s => Err(protocol(&what, s, "")),
        }
    }

    async fn manifest(&self, repo: &Repository, reference: &str) -> Result<Option<FetchedManifest>, RegistryError> {
        let by_digest: Option<Digest> = reference.parse().ok();
        let what = named(repo, reference);
        let mut call = Call::new(Method::GET, Self::api(repo, &format!("manifests/{reference}")), repo, Access::Pull, what.clone())
            .header(ACCEPT, MANIFEST_ACCEPT);
        call.settle = self.settle_for(&what);
        let Some((headers, bytes)) = self.get_small(&call, MAX_MANIFEST_SIZE).await? else {
            return Ok(None);
        };
        let digest = Digest::of(&bytes);
        if let Some(expected) = &by_digest {
            if &digest != expected {
                return Err(RegistryError::Integrity { reference: what, message: format!("the manifest served hashes to {digest}") });
            }
        }
        if let Some(claimed) = header_digest(&headers) {
            if claimed != digest {
                return Err(RegistryError::Integrity {
                    reference: what,
                    message: format!("the registry says the manifest is {claimed}, but its bytes hash to {digest}"),
                });
            }
        }
        let media_type = media_type_of(&headers, &bytes);
        Ok(Some(FetchedManifest { bytes, digest, media_type }))
    }

    async fn blob_bytes(&self, repo: &Repository, digest: &Digest, max_size: u64) -> Result<Vec<u8>, RegistryError> {
        let what = format!("{repo}@{digest}");
        let mut call = Call::new(Method::GET, Self::api(repo, &format!("blobs/{digest}")), repo, Access::Pull, what.clone());
        call.settle = self.settle_for(&call.what);
        let (_, bytes) = self.get_small(&call, max_size).await?.ok_or_else(|| protocol(&what, 404, "blob unknown"))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::Integrity { reference: what, message: format!("the blob served hashes to {actual}") });
        }
        Ok(bytes)
    }

    async fn blob_to_file(&self, repo: &Repository, digest: &Digest, max_size: u64, dest: &Path) -> Result<(Digest, u64), RegistryError> {
        let what = format!("{repo}@{digest}");
        let mut call = Call::new(Method::GET, Self::api(repo, &format!("blobs/{digest}")), repo, Access::Pull, what);
        // Large blobs: only the idle read timeout applies, not a total one.
        call.timeout = None;
        call.settle = self.settle_for(&call.what);
        self.download(&call, digest, max_size, dest).await
    }

    async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("{repo}@{digest}");
        let call = Call::new(Method::HEAD, Self::api(repo, &format!("blobs/{digest}")), repo, Access::Pull, what.clone());
        let resp = self.send(&call).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(protocol(&what, s, "")),
        }
    }

    async fn push_blob_file(&self, repo: &Repository, digest: &Digest, path: &Path, offset: u64, size: u64) -> Result<(), RegistryError> {
        self.upload(repo, digest, BlobFile::open(path, offset, size)?).await
    }

    async fn push_manifest(&self, repo: &Repository, reference: &str, media_type: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let digest = Digest::of(bytes);
        let what = named(repo, reference);
        let mut call = Call::new(Method::PUT, Self::api(repo, &format!("manifests/{reference}")), repo, Access::Push, what.clone())
            .header(CONTENT_TYPE, media_type)
            .body(Bytes::copy_from_slice(bytes));
        call.settle = Settle::BlobUnknown;
        let resp = self.send(&call).await?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            return Err(protocol(&what, status, &read_text(resp).await));
        }
        if let Some(claimed) = header_digest(resp.headers()) {
            if claimed != digest {
                return Err(RegistryError::Integrity {
                    reference: what,
                    message: format!("the registry stored the manifest as {claimed}, but the bytes sent hash to {digest}"),
                });
            }
        }
        self.remember(format!("{repo}@{digest}"));
        self.remember(what);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_become_messages() {
        let body = r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"}]}"#;
        assert_eq!(error_message(body), "MANIFEST_BLOB_UNKNOWN blob unknown to registry");
        assert_eq!(error_message(""), "(no details)");
        assert_eq!(error_message("<html>bad gateway</html>"), "<html>bad gateway</html>");
    }

    #[test]
    fn media_type_prefers_the_header_then_the_document() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.index.v1+json; charset=utf-8"));
        assert_eq!(media_type_of(&h, b"{}"), "application/vnd.oci.image.index.v1+json");
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(
            media_type_of(&h, br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}
