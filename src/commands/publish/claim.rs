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
//! tag `sha256-<hex>.claim` in the capsule repository (hex: the digest being
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
//! alone always gets `true` (unless the registry will not let it write `X`:
//! see [`ClaimMark::write`]). Runs that overlap may both get `false` (A is
//! overtaken at `X` by B, and B finds A's tag): never two, sometimes none.
//!
//! This holds as far as the registry answers a read with the last write
//! before it, which a registry does for one tag; a cache in front of it that
//! serves stale tags weakens it the way it weakens the settle delay of
//! [`super::tagging`].
//!
//! Where. The `.claim` tag stays (registries cannot be relied on to delete
//! a tag), as cosign's `.sig` does, also after a run that failed later on.
//! So it is kept in the capsule repository, for the image tag of
//! `--image-layout` too: that repository is release-capsule's own, read by
//! `^git-[0-9a-f]{40}$` Warehouses, while the image repository is the
//! user's, read by tools that may take any tag (a Kargo Warehouse or Flux
//! ImagePolicy ordering tags lexically or alphabetically picks
//! `sha256-….claim` over `git-…`; registry UIs and retention rules count it
//! as a version). All runs that push one image under one tag share the
//! capsule repository, so they share the register. The mark's annotation
//! names the tag it claims, for whoever finds it.

use std::collections::BTreeMap;

use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{empty_config_descriptor, Manifest, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE};
use crate::core::tag::Tag;
use crate::failure::Failure;
use crate::registry::{RegistryClient, RegistryError};

pub const CLAIM_ARTIFACT_TYPE: &str = "application/vnd.release-capsule.claim.v1";
/// The annotation that makes each run's mark unique.
pub const CLAIM_ANNOTATION: &str = "vnd.release-capsule.claim";
/// The annotation that names the tag claimed (`<repository>:<tag>`).
pub const CLAIMED_TAG_ANNOTATION: &str = "vnd.release-capsule.claim.tag";

/// One run's mark in the register: a manifest of the empty config and one
/// empty layer (how OCI 1.1 says to write an artifact without content), whose
/// annotations hold a random nonce and the tag claimed.
pub struct ClaimMark {
    tag: Tag,
    bytes: Vec<u8>,
    digest: Digest,
}

impl ClaimMark {
    pub fn new(claimed: &Digest, claimed_tag: &str, nonce: u128) -> Self {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(CLAIM_ARTIFACT_TYPE.into()),
            config: empty_config_descriptor(),
            layers: vec![empty_config_descriptor()],
            subject: None,
            annotations: BTreeMap::from([
                (CLAIM_ANNOTATION.to_owned(), format!("{nonce:032x}")),
                (CLAIMED_TAG_ANNOTATION.to_owned(), claimed_tag.to_owned()),
            ]),
        };
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        Self { tag: Tag::claim(claimed), digest: Digest::of(&bytes), bytes }
    }

    /// A mark with a fresh nonce.
    pub fn random(claimed: &Digest, claimed_tag: &str) -> Self {
        let nonce = (u128::from(crate::entropy::random_u64()) << 64) | u128::from(crate::entropy::random_u64());
        Self::new(claimed, claimed_tag, nonce)
    }

    /// Step 1: `X :=` this mark (the empty blob first: a manifest may only
    /// name blobs the repository has). `false` when the registry refused to
    /// overwrite the register (tag immutability: ECR's IMMUTABLE
    /// repositories, Harbor's rules) because an earlier run wrote it: the
    /// run goes on without a mark, and so reports `false` at step 4, which
    /// keeps "at most one". Failing instead would fail every later run of
    /// that digest.
    pub async fn write<R: RegistryClient>(&self, registry: &R, repo: &Repository) -> Result<bool, Failure> {
        let work = crate::scratch::WorkDir::new()?;
        crate::sign::push_small_blob(registry, repo, EMPTY_CONFIG, work.path()).await?;
        match registry.push_manifest(repo, (&self.tag).into(), MANIFEST_MEDIA_TYPE, &self.bytes).await {
            Ok(()) => Ok(true),
            Err(RegistryError::Protocol { status: 400..=499, .. })
                if registry.resolve(repo, (&self.tag).into()).await.map_err(Failure::from)?.is_some() =>
            {
                Ok(false)
            }
            Err(e) => Err(Failure::from(e)),
        }
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
    use crate::registry::FetchedManifest;

    /// A registry where every request first lets other tasks run a random
    /// number of times (seeded): concurrent runs interleave differently per seed.
    struct Interleaved {
        inner: MemoryRegistry,
        rng: Mutex<Jitter>,
        /// A tag, once written, is refused a second write (as ECR's
        /// IMMUTABLE repositories and Harbor's immutability rules do).
        immutable_tags: bool,
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
            if let ManifestRef::Tag(tag) = reference {
                if self.immutable_tags && self.inner.resolve(repo, reference).await?.is_some() {
                    let message = format!("TAG_INVALID: the tag {tag} already exists and cannot be overwritten");
                    return Err(RegistryError::Protocol { reference: repo.with_tag(tag), status: 400, message });
                }
            }
            self.inner.push_manifest(repo, reference, media_type, bytes).await
        }
    }

    static TAG: std::sync::LazyLock<Tag> = std::sync::LazyLock::new(|| "git-x".parse().unwrap());

    /// `git-x` in `repo`, for a tag that was absent, with the register beside it.
    fn tag_write<'a>(repo: &'a Repository, bytes: &'a [u8], digest: &'a Digest) -> TagWrite<'a> {
        let what = "capsule";
        TagWrite { repo, tag: &TAG, register: repo, media_type: MANIFEST_MEDIA_TYPE, bytes, digest, previous: None, what }
    }

    #[test]
    fn concurrent_runs_of_one_release_never_both_report_that_they_made_the_tag() {
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let bytes = b"{\"capsule\":1}".to_vec();
        let digest = Digest::of(&bytes);
        let (mut one, mut none) = (0, 0);
        for seed in 0..300u64 {
            let reg = Interleaved { inner: MemoryRegistry::new(), rng: Mutex::new(Jitter::new(seed)), immutable_tags: false };
            let runs = 2 + (seed % 2) as usize;
            let never = Cancel::never();
            let write = tag_write(&repo, &bytes, &digest);
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

    #[tokio::test(start_paused = true)]
    async fn a_register_the_registry_will_not_overwrite_leaves_the_run_tagging_without_a_claim() {
        let reg = Interleaved { inner: MemoryRegistry::new(), rng: Mutex::new(Jitter::new(1)), immutable_tags: true };
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let bytes = b"{\"capsule\":1}".to_vec();
        let digest = Digest::of(&bytes);
        // An earlier run wrote its mark, then failed before tagging.
        assert!(ClaimMark::random(&digest, "r:git-x").write(&reg, &repo).await.unwrap());
        let write = tag_write(&repo, &bytes, &digest);
        let claimed = claim(&reg, &write, &Cancel::never(), |_| async { Ok(false) }).await.unwrap();
        assert_eq!(claimed, Claim::Found, "tagged, but with no mark of its own it cannot say it made the tag");
        assert_eq!(reg.inner.resolve(&repo, (&*TAG).into()).await.unwrap(), Some(digest));
    }

    #[tokio::test]
    async fn marks_differ_between_runs_and_the_last_one_written_holds_the_register() {
        let reg = MemoryRegistry::new();
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let claimed = Digest::of(b"capsule");
        let (a, b) = (ClaimMark::random(&claimed, "r:git-x"), ClaimMark::random(&claimed, "r:git-x"));
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.tag.as_str(), format!("sha256-{}.claim", claimed.hex()));
        assert!(a.write(&reg, &repo).await.unwrap());
        assert!(a.still_ours(&reg, &repo).await.unwrap());
        assert!(b.write(&reg, &repo).await.unwrap());
        assert!(!a.still_ours(&reg, &repo).await.unwrap() && b.still_ours(&reg, &repo).await.unwrap());
        // A valid OCI artifact: empty config, one empty layer, the blob there.
        let m: Manifest = serde_json::from_slice(&ClaimMark::new(&claimed, "r:git-x", 7).bytes).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some(CLAIM_ARTIFACT_TYPE));
        assert_eq!(m.layers, std::slice::from_ref(&m.config));
        assert_eq!(m.annotations[CLAIM_ANNOTATION], format!("{:032x}", 7));
        assert_eq!(m.annotations[CLAIMED_TAG_ANNOTATION], "r:git-x");
        assert!(reg.blob_exists(&repo, &Digest::of(EMPTY_CONFIG)).await.unwrap());
    }
}
