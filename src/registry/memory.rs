//! An in-memory [`RegistryClient`] for flow tests. It keeps the trait's
//! contract (digest checks, size limits, files left only when they match)
//! unless made [`MemoryRegistry::careless`], which serves whatever it holds:
//! that shows the flows check what they receive themselves.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use super::{FetchedManifest, RegistryClient, RegistryError};
use crate::core::ident::{Digest, Repository};
use crate::core::tag::ManifestRef;

#[derive(Default)]
struct State {
    /// (repository, tag) → manifest digest.
    tags: HashMap<(String, String), Digest>,
    /// (repository, digest) → (bytes, media type). The bytes need not hash to the key.
    manifests: HashMap<(String, Digest), (Vec<u8>, String)>,
    /// (repository, digest) → bytes, which need not hash to the key.
    blobs: HashMap<(String, Digest), Vec<u8>>,
}

#[derive(Default)]
pub struct MemoryRegistry {
    state: Mutex<State>,
    unreachable: bool,
    careless: bool,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }
    /// Every call fails as a closed port would.
    pub fn unreachable() -> Self {
        Self { unreachable: true, ..Self::default() }
    }
    /// Skips the client-side digest and size checks.
    pub fn careless() -> Self {
        Self { careless: true, ..Self::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn put_blob(&self, repo: &Repository, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.put_blob_as(repo, &digest, bytes);
        digest
    }
    /// Stores `bytes` under `digest`, whether or not they match.
    pub fn put_blob_as(&self, repo: &Repository, digest: &Digest, bytes: &[u8]) {
        self.state().blobs.insert((repo.to_string(), digest.clone()), bytes.to_vec());
    }
    pub fn put_manifest(&self, repo: &Repository, tag: Option<&str>, bytes: &[u8], media_type: &str) -> Digest {
        let digest = Digest::of(bytes);
        self.put_manifest_as(repo, tag, &digest, bytes, media_type);
        digest
    }
    /// Stores `bytes` under `digest` (and `tag`), whether or not they match.
    pub fn put_manifest_as(&self, repo: &Repository, tag: Option<&str>, digest: &Digest, bytes: &[u8], media_type: &str) {
        let mut s = self.state();
        s.manifests.insert((repo.to_string(), digest.clone()), (bytes.to_vec(), media_type.to_owned()));
        if let Some(tag) = tag {
            s.tags.insert((repo.to_string(), tag.to_owned()), digest.clone());
        }
    }

    fn reachable(&self, repo: &Repository) -> Result<(), RegistryError> {
        if self.unreachable {
            return Err(RegistryError::Unreachable {
                registry: repo.registry().to_owned(),
                message: "connection refused".into(),
                source: None,
            });
        }
        Ok(())
    }

    fn lookup(&self, repo: &Repository, reference: ManifestRef<'_>) -> Option<Digest> {
        match reference {
            ManifestRef::Digest(d) => Some(d.clone()),
            ManifestRef::Tag(t) => self.state().tags.get(&(repo.to_string(), t.to_string())).cloned(),
        }
    }

    fn integrity(&self, what: String, message: String) -> Result<(), RegistryError> {
        if self.careless {
            Ok(())
        } else {
            Err(RegistryError::Integrity { reference: what, message })
        }
    }
}

impl RegistryClient for MemoryRegistry {
    async fn resolve(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<Digest>, RegistryError> {
        self.reachable(repo)?;
        let digest = self.lookup(repo, reference);
        Ok(digest.filter(|d| self.state().manifests.contains_key(&(repo.to_string(), d.clone()))))
    }

    async fn manifest(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<FetchedManifest>, RegistryError> {
        self.reachable(repo)?;
        let Some(digest) = self.lookup(repo, reference) else { return Ok(None) };
        let Some((bytes, media_type)) = self.state().manifests.get(&(repo.to_string(), digest.clone())).cloned() else { return Ok(None) };
        if reference.digest().is_some() && Digest::of(&bytes) != digest {
            self.integrity(repo.with_digest(&digest), format!("the manifest hashes to {}", Digest::of(&bytes)))?;
        }
        Ok(Some(FetchedManifest { bytes, digest, media_type }))
    }

    async fn blob_bytes(&self, repo: &Repository, digest: &Digest, max_size: u64) -> Result<Vec<u8>, RegistryError> {
        self.reachable(repo)?;
        let bytes = self.state().blobs.get(&(repo.to_string(), digest.clone())).cloned().ok_or_else(|| RegistryError::Protocol {
            reference: repo.with_digest(digest),
            status: 404,
            message: "blob unknown".into(),
        })?;
        if bytes.len() as u64 > max_size {
            self.integrity(repo.with_digest(digest), format!("more than {max_size} bytes"))?;
        }
        if Digest::of(&bytes) != *digest {
            self.integrity(repo.with_digest(digest), format!("the blob hashes to {}", Digest::of(&bytes)))?;
        }
        Ok(bytes)
    }

    async fn blob_to_file(&self, repo: &Repository, digest: &Digest, max_size: u64, dest: &Path) -> Result<(Digest, u64), RegistryError> {
        let bytes = self.blob_bytes(repo, digest, max_size).await?;
        fs::write(dest, &bytes).map_err(|e| RegistryError::Local {
            path: dest.display().to_string(),
            message: "cannot write".into(),
            source: Some(e),
        })?;
        // What was written, hashed: a careless registry reports the truth here.
        Ok((Digest::of(&bytes), bytes.len() as u64))
    }

    async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
        self.reachable(repo)?;
        Ok(self.state().blobs.contains_key(&(repo.to_string(), digest.clone())))
    }

    async fn push_blob_file(&self, repo: &Repository, digest: &Digest, path: &Path, offset: u64, size: u64) -> Result<(), RegistryError> {
        self.reachable(repo)?;
        let local = |e| RegistryError::Local { path: path.display().to_string(), message: "cannot read".into(), source: Some(e) };
        let mut file = fs::File::open(path).map_err(local)?;
        file.seek(SeekFrom::Start(offset)).map_err(local)?;
        let mut bytes = Vec::new();
        file.take(size).read_to_end(&mut bytes).map_err(local)?;
        if Digest::of(&bytes) != *digest {
            self.integrity(repo.with_digest(digest), "the upload does not hash to its digest".into())?;
        }
        self.put_blob_as(repo, digest, &bytes);
        Ok(())
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        reference: ManifestRef<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        self.reachable(repo)?;
        let tag = match reference {
            ManifestRef::Tag(t) => Some(t.as_str()),
            ManifestRef::Digest(_) => None,
        };
        self.put_manifest(repo, tag, bytes, media_type);
        Ok(())
    }
}
