//! The writes: blobs, then the tag, by the race protocol of spec section 7
//! ("Concurrency").
//!
//! Registries have no compare-and-swap on tags: a manifest PUT under a tag is
//! last-writer-wins. Two runs of the same sha (a re-run beside a push, a
//! dispatch) can both find the tag absent and both push. So [`claim_tag`]
//! narrows the race itself:
//! 1. right before the PUT it resolves the tag again; if it changed since the
//!    run decided what to do, another run got there first;
//! 2. it PUTs, reads the manifest back by digest, waits a settle delay, and
//!    resolves the tag once more. Only a run that still finds its own digest
//!    (or, for a capsule, another capsule of the same release) succeeds; any
//!    other run exits 1 naming both digests.
//!
//! Why that works, and where a window remains: say run A's PUT lands first.
//! Run B's re-check must have happened before it (else B would have seen A's
//! digest and stopped), so B's PUT can only land after A's read-back if B took
//! longer from its re-check to its PUT than A waited between its PUT and its
//! read-back. A waits [`settle_delay`]: four times its own re-check-to-PUT
//! time, at least [`SETTLE_MIN`]. A B whose single PUT is that much slower
//! than A's (a registry stalling one request for seconds) can still move the
//! tag after A reported success; nothing short of a registry-side
//! compare-and-swap closes that. docs/cli.md says so
//! ("Two jobs may publish the same `git-<sha>`").
//!
//! Runs of the same release `PUT` the same digest and all succeed; which one
//! of them *made* the tag (`published=true`) is settled by the claim register
//! of [`super::claim`], written before the re-check and read after the `PUT`.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use futures_util::{StreamExt, TryStreamExt};
use tokio::time::Instant;

use super::claim::ClaimMark;
use super::debug;
use super::timing::mandated;
use crate::cancel::Cancel;
use crate::core::ident::{Digest, Repository};
use crate::core::tag::Tag;
use crate::failure::Failure;
use crate::image_layout::BlobLocation;
use crate::registry::{RegistryClient, RegistryError};
use crate::report;

/// Blob uploads in flight at once: enough to overlap reading, hashing and the
/// network, few enough that memory stays flat (one 4 MiB chunk each).
pub const PARALLEL_UPLOADS: usize = 4;
/// The shortest wait between tagging and the confirming read.
pub const SETTLE_MIN: Duration = Duration::from_millis(500);
/// The wait is this many times the run's own re-check-to-PUT time.
const SETTLE_FACTOR: u32 = 4;
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// How long to wait before the confirming read, given how long this run's
/// re-check and PUT took.
pub fn settle_delay(recheck_to_put: Duration) -> Duration {
    recheck_to_put.saturating_mul(SETTLE_FACTOR).clamp(SETTLE_MIN, SETTLE_MAX)
}

/// One tag to write.
pub(super) struct TagWrite<'a> {
    pub repo: &'a Repository,
    pub tag: &'a Tag,
    /// Where the claim register of [`super::claim`] is kept: the capsule
    /// repository, for the image tag too (the image repository is the
    /// user's, and gets nothing but its tag).
    pub register: &'a Repository,
    pub media_type: &'a str,
    pub bytes: &'a [u8],
    pub digest: &'a Digest,
    /// What the tag named when the run decided to write it: `None` (absent),
    /// or the digest `--on-conflict overwrite` is replacing.
    pub previous: Option<&'a Digest>,
    /// "capsule" or "image", for messages.
    pub what: &'static str,
}

/// Who holds the tag at the end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// This run's digest, and this run's `PUT` made it so ([`super::claim`]).
    Made,
    /// This run's digest, but not by this run's doing alone: it was there at
    /// the re-check, or another run's identical `PUT` may have made it.
    Found,
    /// Another digest that the caller accepted (a capsule of the same release).
    Other(Digest),
}

/// Claims `w.tag` for `w.digest` by the protocol of the module docs. `accept`
/// decides whether another digest found under the tag is as good as ours.
pub(super) async fn claim_tag<R, F, Fut>(registry: &R, w: &TagWrite<'_>, cancel: &Cancel, accept: F) -> Result<Claim, Failure>
where
    R: RegistryClient,
    F: Fn(Digest) -> Fut,
    Fut: Future<Output = Result<bool, Failure>>,
{
    let (repo, tag) = (w.repo, w.tag);
    let tagging = format!("tagging {} {}", w.what, repo.with_tag(tag));
    cancel.check(&tagging)?;
    let mark = ClaimMark::random(w.digest, &repo.with_tag(tag));
    let marked = mandated("claim mark", mark.write(registry, w.register)).await?;
    cancel.check(&tagging)?;
    let started = Instant::now();
    match mandated("re-check", registry.resolve(repo, tag.into())).await.map_err(Failure::from)? {
        Some(now) if &now == w.digest => {
            debug(&format!("{}: another run already tagged this very manifest", repo.with_tag(tag)));
            return Ok(Claim::Found);
        }
        Some(now) if Some(&now) != w.previous => {
            if accept(now.clone()).await? {
                return Ok(Claim::Other(now));
            }
            return Err(lost(w, &now, " before this run could tag it"));
        }
        _ => {}
    }
    cancel.check(&tagging)?;
    registry.push_manifest(repo, tag.into(), w.media_type, w.bytes).await.map_err(Failure::from)?;
    let gap = started.elapsed();
    let made = marked && mandated("claim mark", mark.still_ours(registry, w.register)).await?;
    if !made {
        debug(&format!("{}: another run claimed it since; that run counts as its publisher", repo.with_tag(tag)));
    }
    mandated("read-back", read_back(registry, repo, w.digest)).await?;
    let settle = settle_delay(gap);
    debug(&format!("{}: re-check to PUT took {gap:?}; confirming the tag in {settle:?}", repo.with_tag(tag)));
    tokio::select! {
        biased;
        _ = cancel.cancelled() => {
            return Err(Failure::cancelled(anyhow!(
                "cancelled by {} after tagging {} as {}: the tag names complete content but was not confirmed against concurrent runs",
                cancel.reason().unwrap_or("request"),
                repo.with_tag(tag),
                w.digest
            )));
        }
        _ = mandated("settle", tokio::time::sleep(settle)) => {}
    }
    match mandated("confirm", registry.resolve(repo, tag.into())).await.map_err(Failure::from)? {
        Some(now) if &now == w.digest && made => Ok(Claim::Made),
        Some(now) if &now == w.digest => Ok(Claim::Found),
        Some(now) => {
            if accept(now.clone()).await? {
                Ok(Claim::Other(now))
            } else {
                Err(lost(w, &now, " right after this run tagged it"))
            }
        }
        None => Err(Failure::network(anyhow!(
            "{}: the tag was pushed as {} but is gone when read again; the registry may still be settling, re-run to check",
            repo.with_tag(tag),
            w.digest
        ))),
    }
}

/// The error for a run that did not end up holding the tag.
pub(super) fn lost(w: &TagWrite<'_>, theirs: &Digest, when: &str) -> Failure {
    Failure::failed(anyhow!(
        "{} {} was tagged {theirs} by another run{when}; this run's {} is {}, a different {}. Published tags are immutable \
         (Kargo caches them by tag), so this run publishes nothing more; if the other run is the wrong one, re-run with \
         --on-conflict overwrite",
        w.what,
        w.repo.with_tag(w.tag),
        w.what,
        w.digest,
        if w.what == "capsule" { "release" } else { "image" },
    ))
}

/// Spec section 7: success only once the registry serves what was pushed.
/// The client retries "not found" for what it just wrote, so `None` here
/// means the registry kept not having it.
pub(super) async fn read_back<R: RegistryClient>(registry: &R, repo: &Repository, digest: &Digest) -> Result<(), Failure> {
    match registry.manifest(repo, digest.into()).await.map_err(Failure::from)? {
        Some(m) if &m.digest == digest => Ok(()),
        Some(m) => Err(Failure::failed(anyhow!("{repo}@{digest}: reading the pushed manifest back gave {}", m.digest))),
        None => Err(Failure::network(anyhow!(
            "{repo}@{digest}: the manifest was accepted but cannot be read back; the registry may still be settling, re-run to check"
        ))),
    }
}

/// Uploads blobs in parallel (bounded), skipping those the registry has.
pub(super) async fn push_blobs<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    blobs: Vec<(Digest, BlobLocation)>,
) -> Result<(), RegistryError> {
    futures_util::stream::iter(blobs)
        .map(|(digest, loc)| async move {
            if registry.blob_exists(repo, &digest).await? {
                debug(&format!("{repo}@{digest}: already in the registry"));
                return Ok(());
            }
            registry.push_blob_file(repo, &digest, &loc.file, loc.offset, loc.size).await?;
            eprintln!("  pushed blob {} ({})", digest.short(), report::human_size(loc.size));
            Ok::<(), RegistryError>(())
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::manifest::MANIFEST_MEDIA_TYPE;
    use crate::failure::FailureKind;
    use crate::registry::memory::MemoryRegistry;

    #[test]
    fn the_settle_delay_follows_the_run_and_is_bounded() {
        assert_eq!(settle_delay(Duration::from_millis(5)), SETTLE_MIN);
        assert_eq!(settle_delay(Duration::from_millis(400)), Duration::from_millis(1600));
        assert_eq!(settle_delay(Duration::from_secs(60)), SETTLE_MAX);
    }

    static TAG: std::sync::LazyLock<Tag> = std::sync::LazyLock::new(|| "git-x".parse().unwrap());

    fn write<'a>(repo: &'a Repository, bytes: &'a [u8], digest: &'a Digest, previous: Option<&'a Digest>) -> TagWrite<'a> {
        TagWrite { repo, tag: &TAG, register: repo, media_type: MANIFEST_MEDIA_TYPE, bytes, digest, previous, what: "capsule" }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tag_taken_since_the_decision_is_lost_or_accepted() {
        let reg = MemoryRegistry::new();
        let repo: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let theirs = reg.put_manifest(&repo, Some("git-x"), b"{\"theirs\":1}", MANIFEST_MEDIA_TYPE);
        let ours_bytes = b"{\"ours\":1}".to_vec();
        let ours = Digest::of(&ours_bytes);
        let never = Cancel::never();
        // Decided on an absent tag; another run tagged meanwhile: a conflict naming both.
        let e = claim_tag(&reg, &write(&repo, &ours_bytes, &ours, None), &never, |_| async { Ok(false) }).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Failed);
        let text = e.to_string();
        assert!(text.contains(theirs.as_str()) && text.contains(ours.as_str()), "{text}");
        assert_eq!(reg.resolve(&repo, (&*TAG).into()).await.unwrap(), Some(theirs.clone()), "nothing was written");
        // The same release: accepted, nothing written.
        let claim = claim_tag(&reg, &write(&repo, &ours_bytes, &ours, None), &never, |_| async { Ok(true) }).await.unwrap();
        assert_eq!(claim, Claim::Other(theirs.clone()));
        // Overwriting exactly what was decided on: ours, and this run made it.
        let claim = claim_tag(&reg, &write(&repo, &ours_bytes, &ours, Some(&theirs)), &never, |_| async { Ok(false) }).await.unwrap();
        assert_eq!(claim, Claim::Made);
        assert_eq!(reg.resolve(&repo, (&*TAG).into()).await.unwrap(), Some(ours.clone()));
        // Found already naming our digest: not this run's doing.
        let claim = claim_tag(&reg, &write(&repo, &ours_bytes, &ours, None), &never, |_| async { Ok(false) }).await.unwrap();
        assert_eq!(claim, Claim::Found);
    }

    #[tokio::test(start_paused = true)]
    async fn the_claim_register_is_kept_where_it_is_told_not_beside_the_tag() {
        let reg = MemoryRegistry::new();
        let image: Repository = "127.0.0.1:5000/acme/app".parse().unwrap();
        let capsules: Repository = "127.0.0.1:5000/acme/app-release-capsule".parse().unwrap();
        let bytes = b"{\"image\":1}".to_vec();
        let digest = Digest::of(&bytes);
        let w = TagWrite { register: &capsules, what: "image", ..write(&image, &bytes, &digest, None) };
        assert_eq!(claim_tag(&reg, &w, &Cancel::never(), |_| async { Ok(false) }).await.unwrap(), Claim::Made);
        let register = Tag::claim(&digest);
        assert!(reg.resolve(&capsules, (&register).into()).await.unwrap().is_some(), "in the capsule repository");
        assert_eq!(reg.resolve(&image, (&register).into()).await.unwrap(), None, "nothing but the tag in the image repository");
        assert_eq!(reg.resolve(&image, (&*TAG).into()).await.unwrap(), Some(digest));
    }

    #[tokio::test]
    async fn nothing_is_written_once_cancelled() {
        let reg = MemoryRegistry::new();
        let repo: Repository = "127.0.0.1:5000/acme/app".parse().unwrap();
        let bytes = b"{}".to_vec();
        let digest = Digest::of(&bytes);
        let cancel = Cancel::never();
        cancel.cancel("SIGINT");
        let e = claim_tag(&reg, &write(&repo, &bytes, &digest, None), &cancel, |_| async { Ok(false) }).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Cancelled);
        assert_eq!(reg.resolve(&repo, (&*TAG).into()).await.unwrap(), None);
    }
}
