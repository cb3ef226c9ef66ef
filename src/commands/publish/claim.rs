//! Which run made a tag: spec section 7 says only a run whose own `PUT` made
//! the tag name its digest reports `published=true` (and, for an image it
//! pushed, `imagePushed=true`); a run that found the tag already naming its
//! digest reports `false`.
//!
//! Why the tag alone cannot tell. Runs of one release `PUT` byte-identical
//! manifests. In the interleaving where both re-check the tag (absent), both
//! `PUT` and both read it back, each run sees exactly what a run alone sees.
//! So any rule that lets a run alone report `true` lets both report `true`
//! there. Something that differs between runs must be written.
//!
//! The rule. Registries have no compare-and-swap, but plain registers are
//! enough for a *splitter* (Moir and Anderson, 1995). The register `X` is the
//! tag `sha256-<hex>.claim` beside the claimed tag (hex: the digest being
//! tagged), which names a manifest unique to the run ([`ClaimMark`]); the tag
//! itself is the door:
//!
//! 1. `X :=` this run's mark;
//! 2. re-check the tag: already this digest → `false` (another run made it);
//! 3. `PUT` the tag;
//! 4. read `X`: still this run's mark → `true`, else `false`.
//!
//! At most one run gets `true`. Say runs A and B both did, and A wrote `X`
//! first. A read its own mark, so A read before B wrote `X`, and B wrote `X`
//! before its re-check; A's `PUT` came before A's read. So B's re-check found
//! the tag naming the digest, and B stopped at step 2: a contradiction. A run
//! alone always gets `true`. Runs that overlap may both get `false` (A is
//! overtaken at `X` by B, and B finds A's tag): never two, sometimes none.
//!
//! This holds as far as the registry answers a read with the last write
//! before it, which a registry does for one tag; a cache in front of it that
//! serves stale tags weakens it the way it weakens the settle delay of
//! [`super::tagging`]. The `.claim` tag stays, as cosign's `.sig` does; a
//! Kargo Warehouse's `^git-[0-9a-f]{40}$` and Flux's tag or SemVer
//! selection never pick it.

use std::collections::BTreeMap;

use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{empty_config_descriptor, Manifest, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE};
use crate::core::tag::Tag;
use crate::failure::Failure;
use crate::registry::RegistryClient;

pub const CLAIM_ARTIFACT_TYPE: &str = "application/vnd.release-capsule.claim.v1";
/// The annotation that makes each run's mark unique.
pub const CLAIM_ANNOTATION: &str = "vnd.release-capsule.claim";

/// One run's mark in the register: a manifest of the empty config and one
/// empty layer (how OCI 1.1 says to write an artifact without content), whose
/// annotation holds a random nonce.
pub struct ClaimMark {
    tag: Tag,
    bytes: Vec<u8>,
    digest: Digest,
}

impl ClaimMark {
    pub fn new(claimed: &Digest, nonce: u128) -> Self {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(CLAIM_ARTIFACT_TYPE.into()),
            config: empty_config_descriptor(),
            layers: vec![empty_config_descriptor()],
            subject: None,
            annotations: BTreeMap::from([(CLAIM_ANNOTATION.to_owned(), format!("{nonce:032x}"))]),
        };
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        Self { tag: Tag::claim(claimed), digest: Digest::of(&bytes), bytes }
    }

    /// A mark with a fresh nonce.
    pub fn random(claimed: &Digest) -> Self {
        let nonce = (u128::from(crate::entropy::random_u64()) << 64) | u128::from(crate::entropy::random_u64());
        Self::new(claimed, nonce)
    }

    /// Step 1: `X :=` this mark (the empty blob first: a manifest may only
    /// name blobs the repository has).
    pub async fn write<R: RegistryClient>(&self, registry: &R, repo: &Repository) -> Result<(), Failure> {
        let work = crate::scratch::WorkDir::new()?;
        crate::sign::push_small_blob(registry, repo, EMPTY_CONFIG, work.path()).await?;
        registry.push_manifest(repo, (&self.tag).into(), MANIFEST_MEDIA_TYPE, &self.bytes).await.map_err(Failure::from)
    }

    /// Step 4: whether `X` still holds this mark.
    pub async fn still_ours<R: RegistryClient>(&self, registry: &R, repo: &Repository) -> Result<bool, Failure> {
        Ok(registry.resolve(repo, (&self.tag).into()).await.map_err(Failure::from)?.as_ref() == Some(&self.digest))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;
    use crate::cancel::Cancel;
    use crate::commands::publish::tagging::{claim_tag as claim, Claim, TagWrite};
    use crate::core::tag::ManifestRef;
    use crate::registry::memory::MemoryRegistry;
    use crate::registry::retry::Jitter;
    use crate::registry::{FetchedManifest, RegistryError};

    /// A registry where every request first lets other tasks run a random
    /// number of times (seeded): concurrent runs interleave differently per seed.
    struct Interleaved {
        inner: MemoryRegistry,
        rng: Mutex<Jitter>,
    }

    impl Interleaved {
        async fn shuffle(&self) {
            let turns = (self.rng.lock().unwrap().next_unit() * 4.0) as u32;
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
        }
    }

    impl RegistryClient for Interleaved {
        async fn resolve(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<Digest>, RegistryError> {
            self.shuffle().await;
            self.inner.resolve(repo, reference).await
        }
        async fn manifest(&self, repo: &Repository, reference: ManifestRef<'_>) -> Result<Option<FetchedManifest>, RegistryError> {
            self.shuffle().await;
            self.inner.manifest(repo, reference).await
        }
        async fn blob_bytes(&self, repo: &Repository, digest: &Digest, max: u64) -> Result<Vec<u8>, RegistryError> {
            self.inner.blob_bytes(repo, digest, max).await
        }
        async fn blob_to_file(&self, repo: &Repository, digest: &Digest, max: u64, dest: &Path) -> Result<(Digest, u64), RegistryError> {
            self.inner.blob_to_file(repo, digest, max, dest).await
        }
        async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
            self.shuffle().await;
            self.inner.blob_exists(repo, digest).await
        }
        async fn push_blob_file(
            &self,
            repo: &Repository,
            digest: &Digest,
            path: &Path,
            offset: u64,
            size: u64,
        ) -> Result<(), RegistryError> {
            self.shuffle().await;
            self.inner.push_blob_file(repo, digest, path, offset, size).await
        }
        async fn push_manifest(
            &self,
            repo: &Repository,
            reference: ManifestRef<'_>,
            media_type: &str,
            bytes: &[u8],
        ) -> Result<(), RegistryError> {
            self.shuffle().await;
            self.inner.push_manifest(repo, reference, media_type, bytes).await
        }
    }

    #[test]
    fn concurrent_runs_of_one_release_never_both_report_that_they_made_the_tag() {
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let bytes = b"{\"capsule\":1}".to_vec();
        let digest = Digest::of(&bytes);
        let tag: Tag = "git-x".parse().unwrap();
        let (mut one, mut none) = (0, 0);
        for seed in 0..300u64 {
            let reg = Interleaved { inner: MemoryRegistry::new(), rng: Mutex::new(Jitter::new(seed)) };
            let runs = 2 + (seed % 2) as usize;
            let never = Cancel::never();
            let write = TagWrite {
                repo: &repo,
                tag: &tag,
                media_type: MANIFEST_MEDIA_TYPE,
                bytes: &bytes,
                digest: &digest,
                previous: None,
                what: "capsule",
            };
            let claims = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
                futures_util::future::join_all((0..runs).map(|_| claim(&reg, &write, &never, |_| async { Ok(false) }))).await
            });
            let claims: Vec<Claim> = claims.into_iter().map(Result::unwrap).collect();
            assert!(claims.iter().all(|c| matches!(c, Claim::Made | Claim::Found)), "seed {seed}: {claims:?}");
            match claims.iter().filter(|c| **c == Claim::Made).count() {
                0 => none += 1,
                1 => one += 1,
                n => panic!("seed {seed}: {n} runs report that they made the tag: {claims:?}"),
            }
        }
        // Overlapping runs may leave none; most interleavings still name one.
        assert!(one > none, "one publisher in {one} trials, none in {none}");
    }

    #[tokio::test]
    async fn marks_differ_between_runs_and_the_last_one_written_holds_the_register() {
        let reg = MemoryRegistry::new();
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let claimed = Digest::of(b"capsule");
        let (a, b) = (ClaimMark::random(&claimed), ClaimMark::random(&claimed));
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.tag.as_str(), format!("sha256-{}.claim", claimed.hex()));
        a.write(&reg, &repo).await.unwrap();
        assert!(a.still_ours(&reg, &repo).await.unwrap());
        b.write(&reg, &repo).await.unwrap();
        assert!(!a.still_ours(&reg, &repo).await.unwrap() && b.still_ours(&reg, &repo).await.unwrap());
        // A valid OCI artifact: empty config, one empty layer, the blob there.
        let m: Manifest = serde_json::from_slice(&ClaimMark::new(&claimed, 7).bytes).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some(CLAIM_ARTIFACT_TYPE));
        assert_eq!(m.layers, std::slice::from_ref(&m.config));
        assert_eq!(m.annotations[CLAIM_ANNOTATION], format!("{:032x}", 7));
        assert!(reg.blob_exists(&repo, &Digest::of(EMPTY_CONFIG)).await.unwrap());
    }
}
