//! The registry edge. Flows (`publish`, `verify`, `pull`) are written against
//! the small [`RegistryClient`] trait, so they run against fakes in tests; the
//! real implementation speaks the OCI distribution API.

use std::future::Future;
use std::path::Path;

use crate::core::ident::{Digest, Repository};
use crate::core::tag::ManifestRef;

pub mod auth;
pub mod credentials;
pub mod endpoint;
#[cfg(test)]
pub mod memory;
pub mod oci;
pub mod retry;
pub mod transport;

pub use oci::{ClientOptions, OciRegistry};

/// A manifest as fetched: the exact bytes, their digest and the content type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or kept failing (exit code 3).
    #[error("{registry}: {message}")]
    Unreachable {
        registry: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// 401/403: the message says which permission or setting to fix.
    #[error("{reference}: access denied ({status}): {hint}")]
    Denied { reference: String, status: u16, hint: String },
    /// What came back is not what was asked for (digest mismatch, bad manifest).
    #[error("{reference}: {message}")]
    Integrity { reference: String, message: String },
    /// Any other answer the registry gave that we cannot use.
    #[error("{reference}: registry answered {status}: {message}")]
    Protocol { reference: String, status: u16, message: String },
    #[error("{path}: {message}")]
    Local {
        path: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Exit codes: the network's fault is 3; refused credentials are the user's
/// input to fix (2); content that does not match its digest is a failure (1).
impl From<RegistryError> for crate::failure::Failure {
    fn from(e: RegistryError) -> Self {
        use crate::failure::FailureKind;
        let kind = match &e {
            RegistryError::Unreachable { .. } | RegistryError::Protocol { .. } => FailureKind::Network,
            RegistryError::Denied { .. } => FailureKind::Input,
            RegistryError::Integrity { .. } | RegistryError::Local { .. } => FailureKind::Failed,
        };
        Self::new(kind, e)
    }
}

/// What the flows need from a registry. Every method retries transient
/// failures itself; an error returned here is final. Every argument that ends
/// up in a URL is a validated type ([`Repository`], [`ManifestRef`],
/// [`Digest`]): no caller can put a raw string into a registry path.
pub trait RegistryClient: Send + Sync {
    /// The digest `reference` resolves to, or `None` when absent.
    fn resolve(&self, repo: &Repository, reference: ManifestRef<'_>) -> impl Future<Output = Result<Option<Digest>, RegistryError>> + Send;

    /// The manifest (or index) bytes for `reference`, checked against the digest
    /// when `reference` is one; `None` when absent.
    fn manifest(
        &self,
        repo: &Repository,
        reference: ManifestRef<'_>,
    ) -> impl Future<Output = Result<Option<FetchedManifest>, RegistryError>> + Send;

    /// Small blobs (configs) into memory, digest-checked; at most `max_size` bytes.
    fn blob_bytes(&self, repo: &Repository, digest: &Digest, max_size: u64) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send;

    /// Streams a blob into the file at `dest`, hashing as it arrives, and
    /// returns the digest and size of what it wrote (so no caller reads the file
    /// again to hash it). The file is only left behind when the digest matches.
    fn blob_to_file(
        &self,
        repo: &Repository,
        digest: &Digest,
        max_size: u64,
        dest: &Path,
    ) -> impl Future<Output = Result<(Digest, u64), RegistryError>> + Send;

    fn blob_exists(&self, repo: &Repository, digest: &Digest) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// Uploads `size` bytes of the file at `path` from `offset` (a blob inside a
    /// layout tar has an offset), in chunks of at most 4 MiB.
    fn push_blob_file(
        &self,
        repo: &Repository,
        digest: &Digest,
        path: &Path,
        offset: u64,
        size: u64,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// PUTs manifest bytes exactly as given under `reference` (tag or digest).
    fn push_manifest(
        &self,
        repo: &Repository,
        reference: ManifestRef<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
}
