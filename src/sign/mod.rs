//! Signatures (spec section 9), in the format `cosign sign --key` writes and
//! Flux's `spec.verify.provider: cosign` reads: a signature manifest under the
//! tag `sha256-<hex>.sig` in the capsule's repository, one simple-signing
//! layer per signature.
//!
//! - [`keys`]: cosign's key files;
//! - [`payload`]: the payload, the signature and the manifest, pure;
//! - here: finding a valid signature in the registry, and adding ours.

pub mod keys;
pub mod payload;

use std::path::Path;

use anyhow::anyhow;

use self::keys::{PrivateKey, PublicKey};
use crate::cancel::Cancel;
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{Descriptor, Manifest, MANIFEST_MEDIA_TYPE};
use crate::core::tag::Tag;
use crate::failure::Failure;
use crate::registry::{RegistryClient, RegistryError};
use crate::scratch::WorkDir;

/// A concurrent signer can replace the signature manifest between our read
/// and our write; the layer is appended again this many times.
const MAX_APPEND_TRIES: u32 = 3;

/// What the signature tag holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A valid signature by the key, for the digest.
    Signed,
    /// No signature manifest under the tag.
    Unsigned,
    /// Signatures, none valid by this key for this digest (how many, and why the first failed).
    NotByKey { signatures: usize, first_problem: String },
}

impl Finding {
    /// For a check's "actual" column.
    pub fn describe(&self) -> String {
        match self {
            Finding::Signed => "a valid signature".into(),
            Finding::Unsigned => "no signature (no sha256-….sig tag)".into(),
            Finding::NotByKey { signatures, first_problem } => {
                format!("{signatures} signature(s), none valid by this key ({first_problem})")
            }
        }
    }
}

/// Looks for a valid signature by `key` over `repo@digest`.
pub async fn find<R: RegistryClient>(registry: &R, repo: &Repository, digest: &Digest, key: &PublicKey) -> Result<Finding, RegistryError> {
    let tag = Tag::cosign_signature(digest);
    let Some(fetched) = registry.manifest(repo, (&tag).into()).await? else {
        return Ok(Finding::Unsigned);
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&fetched.bytes) else {
        return Ok(Finding::NotByKey { signatures: 0, first_problem: format!("{tag} is not an OCI image manifest") });
    };
    verify_layers(registry, repo, digest, key, &manifest.layers).await
}

async fn verify_layers<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    digest: &Digest,
    key: &PublicKey,
    layers: &[Descriptor],
) -> Result<Finding, RegistryError> {
    let mut signatures = 0;
    let mut first_problem = None;
    for layer in layers.iter().filter(|l| l.media_type == payload::PAYLOAD_MEDIA_TYPE) {
        let Some(signature) = layer.annotations.get(payload::SIGNATURE_ANNOTATION) else { continue };
        signatures += 1;
        let problem = match layer.digest.parse::<Digest>() {
            Ok(d) if layer.size <= payload::MAX_PAYLOAD_SIZE => match registry.blob_bytes(repo, &d, payload::MAX_PAYLOAD_SIZE).await {
                Ok(bytes) => match payload::check(key, digest, &bytes, signature) {
                    Ok(()) => return Ok(Finding::Signed),
                    Err(invalid) => format!("{invalid:?}"),
                },
                Err(RegistryError::Integrity { message, .. }) => message,
                Err(RegistryError::Protocol { status: 404, .. }) => "its payload blob is missing".into(),
                Err(e) => return Err(e),
            },
            _ => "its payload descriptor is malformed".into(),
        };
        first_problem.get_or_insert(problem);
    }
    if signatures == 0 {
        return Ok(Finding::NotByKey { signatures: 0, first_problem: "the signature manifest holds no cosign signature".into() });
    }
    Ok(Finding::NotByKey { signatures, first_problem: first_problem.unwrap_or_default() })
}

/// What [`sign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// A valid signature by this key was there already: nothing pushed.
    AlreadySigned { tag: String },
    /// Our signature was added (other signers' layers kept).
    Pushed { tag: String, manifest: Digest },
}

/// Signs `repo@digest` with `key`, the way `cosign sign --key` stores it:
/// idempotent (a valid signature by the key means nothing is pushed), and
/// appending to what other signers left.
pub async fn sign<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    digest: &Digest,
    key: &PrivateKey,
    cancel: &Cancel,
) -> Result<Signed, Failure> {
    let tag = Tag::cosign_signature(digest);
    let payload_bytes = payload::payload(repo, digest);
    let signature = payload::sign(key, &payload_bytes);
    let ours = payload::signature_layer(&payload_bytes, &signature);
    let work = WorkDir::new()?;
    for _ in 0..MAX_APPEND_TRIES {
        let existing = registry.manifest(repo, (&tag).into()).await.map_err(Failure::from)?;
        let mut layers = match &existing {
            None => Vec::new(),
            Some(fetched) => {
                serde_json::from_slice::<Manifest>(&fetched.bytes)
                    .map_err(|_| {
                        Failure::failed(anyhow!(
                        "{}: holds something that is not a cosign signature manifest; it is left as it is, and the capsule is not signed",
                        repo.with_tag(&tag)
                    ))
                    })?
                    .layers
            }
        };
        if verify_layers(registry, repo, digest, &key.public, &layers).await.map_err(Failure::from)? == Finding::Signed {
            return Ok(Signed::AlreadySigned { tag: tag.to_string() });
        }
        layers.push(ours.clone());
        let (config, manifest) = payload::signature_manifest(layers);
        for blob in [&payload_bytes, &config] {
            cancel.check(&format!("uploading the signature for {}", repo.with_digest(digest)))?;
            push_small_blob(registry, repo, blob, work.path()).await?;
        }
        cancel.check(&format!("tagging the signature {}", repo.with_tag(&tag)))?;
        registry.push_manifest(repo, (&tag).into(), MANIFEST_MEDIA_TYPE, &manifest).await.map_err(Failure::from)?;
        // Another signer may have replaced the manifest meanwhile: ours must be in what the tag names now.
        let now = registry.manifest(repo, (&tag).into()).await.map_err(Failure::from)?;
        let kept = now.as_ref().and_then(|m| serde_json::from_slice::<Manifest>(&m.bytes).ok()).is_some_and(|m| m.layers.contains(&ours));
        if kept {
            return Ok(Signed::Pushed { tag: tag.to_string(), manifest: Digest::of(&manifest) });
        }
    }
    Err(Failure::network(anyhow!(
        "{}: another signer kept replacing the signature manifest; re-run to add this signature",
        repo.with_tag(&tag)
    )))
}

pub(crate) async fn push_small_blob<R: RegistryClient>(registry: &R, repo: &Repository, bytes: &[u8], work: &Path) -> Result<(), Failure> {
    let digest = Digest::of(bytes);
    if registry.blob_exists(repo, &digest).await.map_err(Failure::from)? {
        return Ok(());
    }
    let path = work.join(digest.hex());
    std::fs::write(&path, bytes)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("{}: cannot be written", path.display()))))?;
    registry.push_blob_file(repo, &digest, &path, 0, bytes.len() as u64).await.map_err(Failure::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::memory::MemoryRegistry;

    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmKnLL81dCEYc6Spq\nrFukFeTnU5JjtXfeNHAXJj3hYTahRANCAATjp4/Z4tUbZwUdId07GQeUdwLll4Br\nYLP25Fk+mBY2G0lyKqjqLG5hxhimbEJH6j+lzg5tcYpQgzXtOJ66Zi0N\n-----END PRIVATE KEY-----\n";

    #[tokio::test]
    async fn signing_is_idempotent_and_keeps_other_signers() {
        let reg = MemoryRegistry::new();
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let digest = reg.put_manifest(&repo, Some("git-x"), b"{\"capsule\":1}", MANIFEST_MEDIA_TYPE);
        let key = PrivateKey::from_pem(PKCS8, None, "ours.key").unwrap();
        assert_eq!(find(&reg, &repo, &digest, &key.public).await.unwrap(), Finding::Unsigned);
        // Another signer got there first.
        let other_payload = payload::payload(&repo, &digest);
        let theirs = payload::signature_layer(&other_payload, "MEUCIQDtheirsignature");
        reg.put_blob(&repo, &other_payload);
        let (config, manifest) = payload::signature_manifest(vec![theirs.clone()]);
        reg.put_blob(&repo, &config);
        reg.put_manifest(&repo, Some(Tag::cosign_signature(&digest).as_str()), &manifest, MANIFEST_MEDIA_TYPE);
        assert!(matches!(find(&reg, &repo, &digest, &key.public).await.unwrap(), Finding::NotByKey { signatures: 1, .. }));

        let cancel = Cancel::never();
        let first = sign(&reg, &repo, &digest, &key, &cancel).await.unwrap();
        assert!(matches!(first, Signed::Pushed { .. }), "{first:?}");
        assert_eq!(find(&reg, &repo, &digest, &key.public).await.unwrap(), Finding::Signed);
        let m: Manifest =
            serde_json::from_slice(&reg.manifest(&repo, (&Tag::cosign_signature(&digest)).into()).await.unwrap().unwrap().bytes).unwrap();
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[0], theirs, "the other signer's layer is kept, first");
        let again = sign(&reg, &repo, &digest, &key, &cancel).await.unwrap();
        assert!(matches!(again, Signed::AlreadySigned { .. }), "{again:?}");
        // A signature of this digest by this key says nothing about another digest.
        assert_eq!(find(&reg, &repo, &Digest::of(b"other"), &key.public).await.unwrap(), Finding::Unsigned);
    }
}
