//! The real [`RegistryClient`]: the OCI distribution API spoken directly over
//! reqwest, one concern per module:
//! - [`send`]: every request goes through [`OciRegistry::send`], which attaches
//!   credentials for the registry's own origin only (never a storage redirect
//!   or a foreign upload location), puts a timeout on it (connect and idle read
//!   in [`super::transport`], plus a total for everything but blob downloads),
//!   retries 429, 5xx, timeouts and dropped connections with capped exponential
//!   backoff honouring `Retry-After` ([`super::retry`]), rides out read-after-
//!   write lag (a "not found" for what this client just pushed, a manifest PUT
//!   answered "blob unknown"), and counts itself;
//! - [`token`]: 401 challenges, Basic or the bearer-token exchange ([`super::auth`]
//!   holds the pure parts); credentials go to a token service only on the
//!   registry's own host, and only over https (or to loopback);
//! - [`upload`]: chunked uploads, at most 4 MiB per request (GHCR's limit), read
//!   with positioned reads (a blob inside a tar uploads from its offset) and
//!   hashed on the way; a lost upload starts over in a new session;
//! - [`download`]: bounded, hashed downloads;
//! - [`answers`]: what the registry's error answers mean.
//!
//! Why not the oci-client crate (evaluated, deliberately not used; worth another
//! look if it gains a pluggable transport):
//! - for a 4xx answer with an OCI error body it returns the parsed errors
//!   without the status code, so 401, 403, 404 and 429 cannot be told apart;
//! - it exposes no response headers: no `Retry-After`, no `Docker-Content-Digest`,
//!   no `Location` of an upload session;
//! - it retries nothing, and cannot retry a single upload chunk;
//! - it builds its own HTTP client: no injected client or middleware, so
//!   neither this module's timeouts nor its plain-loopback/TLS split apply;
//! - it sends an extra `GET /v2/` before its calls.
//!
//! (Its raw-manifest calls do keep the bytes as served, and neither client
//! resumes an interrupted upload: here a lost session starts over.)

mod answers;
mod download;
mod send;
mod token;
mod upload;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, ACCEPT, CONTENT_TYPE};
use reqwest::Method;

use self::answers::{protocol, read_text};
use self::send::{Call, Settle};
use self::upload::BlobFile;
use super::auth::{self, Access, AuthCache};
use super::credentials::{Credentials, RegistryCredentials};
use super::endpoint;
use super::retry::Backoff;
use super::transport::Transport;
use super::{FetchedManifest, RegistryClient, RegistryError};
use crate::core::ident::{Digest, Repository};
use crate::core::tag::ManifestRef;

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
    credentials: Credentials,
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
            .field("authenticated", &!self.credentials.is_empty())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl OciRegistry {
    /// A client with the CLI's login, for the registry hosts it names (or none).
    pub fn new(credentials: &RegistryCredentials, options: ClientOptions) -> Result<Self, RegistryError> {
        Self::with_credentials(Credentials::from_flags(credentials), options)
    }

    /// A client with a login per registry host (a Docker config.json).
    pub fn with_credentials(credentials: Credentials, options: ClientOptions) -> Result<Self, RegistryError> {
        let http = Transport::new()?;
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

    /// The URL of an API path, made only of validated parts.
    fn api(repo: &Repository, path: ApiPath<'_>) -> String {
        let origin = endpoint::origin(repo.registry());
        match path {
            ApiPath::Manifest(reference) => format!("{origin}/v2/{}/manifests/{reference}", repo.path()),
            ApiPath::Blob(digest) => format!("{origin}/v2/{}/blobs/{digest}", repo.path()),
            ApiPath::Uploads => format!("{origin}/v2/{}/blobs/uploads/", repo.path()),
        }
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
        let (repo, registry) = (call.repo.to_string(), call.repo.registry());
        let hint = match self.credentials.missing_for(registry) {
            Some(hint) => hint,
            None => auth::denied_hint(registry, &repo, call.access, self.has_login(registry)),
        };
        RegistryError::Denied { reference: call.what.clone(), status, hint }
    }
}

/// The paths of the distribution API this client uses.
#[derive(Clone, Copy)]
enum ApiPath<'a> {
    Manifest(ManifestRef<'a>),
    Blob(&'a Digest),
    Uploads,
}

/// `repo:tag` or `repo@digest`, as messages and the written-set name references.
fn named(repo: &Repository, reference: ManifestRef<'_>) -> String {
    match reference {
        ManifestRef::Tag(t) => repo.with_tag(t),
        ManifestRef::Digest(d) => repo.with_digest(d),
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
    async fn resolve(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<Digest>, RegistryError> {
        let what = named(repo, reference);
        let mut call = Call::new(Method::HEAD, Self::api(repo, ApiPath::Manifest(reference)), repo, Access::Pull, what.clone())
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

    async fn manifest(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<FetchedManifest>, RegistryError> {
        let by_digest = reference.digest();
        let what = named(repo, reference);
        let mut call = Call::new(Method::GET, Self::api(repo, ApiPath::Manifest(reference)), repo, Access::Pull, what.clone())
            .header(ACCEPT, MANIFEST_ACCEPT);
        call.settle = self.settle_for(&what);
        let Some((headers, bytes)) = self.get_small(&call, MAX_MANIFEST_SIZE).await? else {
            return Ok(None);
        };
        let digest = Digest::of(&bytes);
        if let Some(expected) = by_digest {
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
        let mut call = Call::new(Method::GET, Self::api(repo, ApiPath::Blob(digest)), repo, Access::Pull, what.clone());
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
        let mut call = Call::new(Method::GET, Self::api(repo, ApiPath::Blob(digest)), repo, Access::Pull, what);
        // Large blobs: only the idle read timeout applies, not a total one.
        call.timeout = None;
        call.settle = self.settle_for(&call.what);
        self.download(&call, digest, max_size, dest).await
    }

    async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("{repo}@{digest}");
        let call = Call::new(Method::HEAD, Self::api(repo, ApiPath::Blob(digest)), repo, Access::Pull, what.clone());
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

    async fn push_manifest(
        &self,
        repo: &Repository,
        reference: ManifestRef<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let digest = Digest::of(bytes);
        let what = named(repo, reference);
        let mut call = Call::new(Method::PUT, Self::api(repo, ApiPath::Manifest(reference)), repo, Access::Push, what.clone())
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
    use reqwest::header::HeaderValue;

    use super::*;

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
