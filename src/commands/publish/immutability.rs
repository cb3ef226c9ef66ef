//! Step 4 of publish: what to do with the capsule tag (spec section 7). On the
//! same digest, nothing. On another capsule of the same release (equal
//! gitCommit, image.digest and package.digest), keep it. Anything else is a
//! conflict (exit 1, naming both digests) unless `--on-conflict overwrite`.

use std::io::BufReader;
use std::path::Path;

use anyhow::anyhow;

use super::debug;
use crate::cli::OnConflict;
use crate::core::capsule::{Built, MAX_LAYER_SIZE};
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{Manifest, ARTIFACT_TYPE, LAYER_MEDIA_TYPE};
use crate::core::release::{self, ReleaseDoc};
use crate::failure::Failure;
use crate::registry::RegistryClient;
use crate::report::CapsuleReport;
use crate::settings::PublishSettings;
use crate::tree::unpack;

/// A capsule already under the tag, as read back.
pub(super) struct Existing {
    pub digest: Digest,
    pub manifest: Manifest,
    pub theirs: ReleaseDoc,
}

/// What to do with the capsule tag.
pub(super) enum CapsuleAction {
    Push,
    /// The tag names this very capsule.
    Unchanged,
    /// The tag names another capsule of the same release: keep it.
    KeepSameRelease(Box<Existing>),
    /// The tag names a different release and the user said overwrite.
    Overwrite {
        digest: Digest,
    },
}

/// Decides from what the capsule tag resolved to; a conflict without
/// `--on-conflict overwrite` is an error naming both digests.
pub(super) async fn capsule_action<R: RegistryClient>(
    registry: &R,
    s: &PublishSettings,
    existing: Option<Digest>,
    built: &Built,
    ours: &ReleaseDoc,
    work: &Path,
) -> Result<CapsuleAction, Failure> {
    let c = &s.capsule;
    let tag = c.sha.tag();
    let Some(digest) = existing else {
        return Ok(CapsuleAction::Push);
    };
    if digest == built.digest {
        return Ok(CapsuleAction::Unchanged);
    }
    match existing_release(registry, &c.capsule, &digest, work).await? {
        Some(existing) if existing.theirs.same_release_as(ours) => Ok(CapsuleAction::KeepSameRelease(Box::new(existing))),
        _ if s.on_conflict == OnConflict::Overwrite => Ok(CapsuleAction::Overwrite { digest }),
        theirs => Err(Failure::failed(anyhow!(
            "capsule {}:{tag} already names a different release: the tag points to {digest}, this build is {}{}; \
             published capsule tags are immutable (Kargo caches them by tag). To replace it anyway, re-run with --on-conflict overwrite",
            c.capsule,
            built.digest,
            differences(theirs.as_ref().map(|e| &e.theirs), ours)
        ))),
    }
}

/// The release.yaml of the capsule `digest`, if it is a v1 capsule whose
/// archive unpacks safely; `None` for anything else (which is then a
/// different release).
pub(super) async fn existing_release<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    digest: &Digest,
    work: &Path,
) -> Result<Option<Existing>, Failure> {
    let Some(fetched) = registry.manifest(repo, digest.into()).await.map_err(Failure::from)? else {
        return Ok(None);
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&fetched.bytes) else {
        debug(&format!("{repo}@{digest}: not an OCI image manifest"));
        return Ok(None);
    };
    let layer = match manifest.layers.first() {
        Some(l)
            if manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE) && l.media_type == LAYER_MEDIA_TYPE && l.size <= MAX_LAYER_SIZE =>
        {
            l
        }
        _ => {
            debug(&format!("{repo}@{digest}: not a v1 release capsule"));
            return Ok(None);
        }
    };
    let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
        return Ok(None);
    };
    // Each look gets its own directory: a run may read more than one capsule.
    let dir = work.join(format!("existing-{}", digest.hex()));
    let archive = dir.with_extension("tar.gz");
    registry.blob_to_file(repo, &layer_digest, MAX_LAYER_SIZE, &archive).await.map_err(Failure::from)?;
    let file = std::fs::File::open(&archive)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("{}: cannot be read", archive.display()))))?;
    if let Err(e) = unpack::unpack(BufReader::new(file), &dir) {
        debug(&format!("{repo}@{digest}: its archive does not unpack: {e}"));
        return Ok(None);
    }
    let Ok(text) = std::fs::read_to_string(dir.join(release::RELEASE_FILE)) else {
        return Ok(None);
    };
    Ok(release::parse(&text).ok().map(|theirs| Existing { digest: digest.clone(), manifest, theirs }))
}

/// Which of the identifying fields differ, for the conflict message.
fn differences(theirs: Option<&ReleaseDoc>, ours: &ReleaseDoc) -> String {
    let Some(t) = theirs else {
        return " (the published one is not a readable v1 capsule)".into();
    };
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    let mut diffs = Vec::new();
    if t.git_commit != ours.git_commit {
        diffs.push(format!("gitCommit {} vs {}", show(&t.git_commit), show(&ours.git_commit)));
    }
    if t.image.digest != ours.image.digest {
        diffs.push(format!("image.digest {} vs {}", show(&t.image.digest), show(&ours.image.digest)));
    }
    if t.package.digest != ours.package.digest {
        diffs.push(format!("package.digest {} vs {}", show(&t.package.digest), show(&ours.package.digest)));
    }
    if diffs.is_empty() {
        String::new()
    } else {
        format!(" (published vs this build: {})", diffs.join("; "))
    }
}

/// The report of a kept capsule describes what the tag points to.
pub(super) fn describe_existing(report: &mut CapsuleReport, repo: &Repository, existing: &Existing) {
    report.digest = existing.digest.to_string();
    report.reference = repo.with_digest(&existing.digest);
    if let Some(l) = existing.manifest.layers.first() {
        report.layer_digest = l.digest.clone();
        report.layer_size = l.size;
    }
    let chart = existing.manifest.layers.get(1).filter(|l| l.media_type == crate::core::manifest::CHART_LAYER_MEDIA_TYPE);
    report.chart_layer_digest = chart.map(|l| l.digest.clone());
    report.chart_layer_size = chart.map(|l| l.size);
    if let Some(created) = &existing.theirs.created {
        report.created = created.clone();
    }
}
