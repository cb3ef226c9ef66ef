//! `release-capsule publish`: resolve (or push) the image, build the capsule,
//! and push it by the rules of spec section 7.

use crate::cli::PublishArgs;
use crate::core::ident::GitSha;
use crate::core::package::Diagnostic;
use crate::core::timestamp::Created;
use crate::failure::{Classify, Failure, FailureKind};
use crate::report::CapsuleReport;
use crate::settings::{Env, PublishSettings};

/// What a publish did, for the CLI's output and the action's outputs,
/// check run and summary.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub report: CapsuleReport,
    /// A new capsule (or a moved tag) was pushed; false when the tag already
    /// named this release, and on a dry run.
    pub published: bool,
    /// The image was pushed from `--image-layout` by this run.
    pub image_pushed: bool,
    pub dry_run: bool,
    /// Package warnings, for annotations.
    pub warnings: Vec<Diagnostic>,
    /// A sentence for logs and the check run ("pushed …", "already published …").
    pub message: String,
}

/// Where the commit's committer date comes from when the image records no
/// build date (spec section 5): the GitHub API in the action, nothing on the CLI.
pub trait CommitDateSource: Send + Sync {
    fn committer_date<'a>(&'a self, sha: &'a GitSha) -> futures_util::future::BoxFuture<'a, anyhow::Result<Option<Created>>>;
}

/// The whole publish flow. (Implemented by the registry work.)
pub async fn publish(_s: &PublishSettings, _commit_dates: Option<&dyn CommitDateSource>) -> Result<PublishOutcome, Failure> {
    Err(Failure::input(anyhow::anyhow!("publish is not implemented yet")))
}

pub fn run(args: &PublishArgs, env: Env) -> Result<(), Failure> {
    let s = PublishSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().or_fail(FailureKind::Failed)?;
    let _outcome = rt.block_on(publish(&s, None))?;
    Ok(())
}
