//! The release a pull request is compared against: the capsule of its merge
//! base (tag `git-<sha>`), or of the nearest first-parent ancestor that has
//! one, at most [`MAX_ANCESTORS`] commits back; verified by the trust chain
//! of spec section 8 before anything of it is rendered.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::package::PackageKind;
use crate::core::reference::Reference;
use crate::core::tag::Tag;
use crate::failure::Failure;
use crate::github::reads::History;
use crate::registry::RegistryClient;
use crate::sign::keys::PublicKey;
use crate::trust;

/// How far back along first parents a capsule is looked for.
pub const MAX_ANCESTORS: usize = 50;

/// A verified base capsule, unpacked.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The commit whose capsule it is.
    pub sha: GitSha,
    /// The pull request's merge base, where the search started.
    pub merge_base: GitSha,
    /// First parents between the two (0: the merge base itself).
    pub steps_back: usize,
    /// `<capsule-repo>@sha256:…`.
    pub capsule: String,
    pub digest: Digest,
    /// The verified package directory (`package/<kind>` of the unpacked capsule).
    pub package_dir: PathBuf,
}

/// What the search came to.
#[derive(Debug, Clone)]
pub enum Found {
    Capsule(Baseline),
    /// No capsule for the merge base or the ancestors looked at (how many).
    Nothing {
        merge_base: GitSha,
        looked_at: usize,
    },
}

/// Where to look.
pub struct Search<'a> {
    pub capsule: &'a Repository,
    pub image: &'a Repository,
    pub public_key: Option<&'a PublicKey>,
    /// The pull request's base and head commits.
    pub base: &'a str,
    pub head: &'a GitSha,
    pub kind: PackageKind,
}

fn parse_sha(what: &str, sha: &str) -> Result<GitSha, Failure> {
    sha.parse().map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("GitHub's {what}"))))
}

/// Finds and verifies the base capsule, unpacking it under `work`.
pub async fn find<C: RegistryClient>(history: &dyn History, registry: &C, s: &Search<'_>, work: &Path) -> Result<Found, Failure> {
    let merge_base = history.merge_base(s.base, s.head.as_str()).await.map_err(crate::preview::github_failure)?;
    let merge_base = parse_sha("merge base", &merge_base)?;
    let mut sha = merge_base.clone();
    for steps_back in 0..=MAX_ANCESTORS {
        let tree = work.join(format!("base-{steps_back}"));
        let capsule = Reference { repo: s.capsule.clone(), tag: Some(Tag::from(&sha)), digest: None };
        let image = Reference { repo: s.image.clone(), tag: Some(Tag::from(&sha)), digest: None };
        let question = trust::Question { capsule: &capsule, image: &image, image_digest: None, public_key: s.public_key };
        let verdict = trust::verify(registry, question, &tree, work).await?;
        match (&verdict.digest, verdict.verified()) {
            // The tag did not resolve: this commit has no capsule.
            (None, _) => {}
            (Some(digest), true) => {
                let kind = verdict.release.as_ref().and_then(|r| r.package.kind.clone()).unwrap_or_default();
                if kind != s.kind.to_string() {
                    return Err(Failure::failed(anyhow!(
                        "base capsule {}: holds a {kind} package, and this pull request a {} one; there is nothing to compare",
                        s.capsule.with_digest(digest),
                        s.kind
                    )));
                }
                return Ok(Found::Capsule(Baseline {
                    package_dir: tree.join(format!("package/{kind}")),
                    capsule: s.capsule.with_digest(digest),
                    digest: digest.clone(),
                    sha,
                    merge_base,
                    steps_back,
                }));
            }
            (Some(digest), false) => {
                // Nothing unverified is ever compared against.
                let what = format!("base capsule {} ({})", s.capsule.with_tag(&sha.tag()), digest);
                return Err(Failure::failed(trust::failed_checks(&what, &verdict.checks)));
            }
        }
        match history.first_parent(sha.as_str()).await.map_err(crate::preview::github_failure)? {
            Some(parent) => sha = parse_sha("first parent", &parent)?,
            None => return Ok(Found::Nothing { merge_base, looked_at: steps_back + 1 }),
        }
    }
    Ok(Found::Nothing { merge_base, looked_at: MAX_ANCESTORS + 1 })
}
