//! Release records in a GitOps repository, written as one commit through
//! GitHub's Git Data API: Git freight for Kargo's source-snapshot plan (spec
//! section 11) and legacy-gitflow gate records (section 12).
//!
//! - [`target`]: the repository, branch, directories and author, parsed;
//! - [`records`]: `freight.yaml` and gate records as text (pure);
//! - [`plan`], [`freight`], [`gate`]: what must change, decided purely from
//!   what the files should be and what the branch holds;
//! - [`snapshot`]: reading the branch's commit, one directory at a time;
//! - [`writer`]: blobs, a tree, a commit, and a fast-forward-only move of the
//!   branch, again on the new head when someone else committed first.

pub mod freight;
pub mod gate;
pub mod plan;
pub mod records;
pub mod snapshot;
pub mod target;
pub mod writer;

use crate::failure::FailureKind;
use crate::github::GitHubError;

pub use self::writer::{Record, Writer, Written};

#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("{repo}: has no branch {branch}; create it, or name an existing one (gitops-branch, --gitops-branch)")]
    UnknownBranch { repo: String, branch: String },
    #[error("{repo}: not found, or hidden from the token; check the name, and give the token Contents: read and write on it")]
    RepositoryNotFound { repo: String },
    #[error(
        "{repo}: the token may not {operation} ({status}: {message}); it needs Contents: read and write on {repo} \
         (a fine-grained token or a GitHub App; a classic token needs the repo scope)"
    )]
    NotAllowed { repo: String, operation: &'static str, status: u16, message: String },
    #[error(
        "{path}: already holds a different release (it differs in {}); a release directory is never changed: find out why \
         the same commit gave other files, or replace it on purpose with on-conflict: overwrite (--on-conflict overwrite)",
        differences.join(", ")
    )]
    Conflict { path: String, differences: Vec<String> },
    #[error("{path}: exists but is not this release's gate record ({message}); fix or remove it")]
    BadRecord { path: String, message: String },
    #[error("{path}: is a file where a directory belongs")]
    NotADirectory { path: String },
    #[error("{path}: is a directory where a file belongs")]
    NotAFile { path: String },
    #[error(
        "{repo}: {branch} could not be moved to a commit in {attempts} attempts (last: {last}); nothing was committed; \
         run again"
    )]
    Busy { repo: String, branch: String, attempts: u32, last: String },
    /// The ref update's outcome was unknown and the branch could not be read
    /// to settle it.
    #[error(
        "{repo}: moving {branch} to {commit} got {why}, and reading {branch} back failed: {source}; the records may or may \
         not be committed (a re-run finds them if they are, and commits nothing twice)"
    )]
    Unresolved { repo: String, branch: String, commit: String, why: String, source: Box<GitOpsError> },
    #[error("{repo}: cancelled by {reason} {when}")]
    Cancelled { repo: String, reason: &'static str, when: String },
    #[error("{path}: GitHub stored {actual} where the content hashes to blob {expected}; nothing was committed")]
    BlobMismatch { path: String, expected: String, actual: String },
    #[error(transparent)]
    GitHub(GitHubError),
    #[error("{message}")]
    Unexpected { message: String },
}

impl From<GitHubError> for GitOpsError {
    fn from(e: GitHubError) -> Self {
        Self::GitHub(e)
    }
}

impl GitOpsError {
    /// The exit code's kind: the user's setup (2), GitHub unreachable or
    /// rate limited (3), anything else (1).
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::UnknownBranch { .. } | Self::RepositoryNotFound { .. } | Self::NotAllowed { .. } => FailureKind::Input,
            Self::GitHub(GitHubError::Transport { .. } | GitHubError::RateLimited { .. }) | Self::Unresolved { .. } => FailureKind::Network,
            Self::GitHub(GitHubError::Rejected { status, .. }) if *status >= 500 => FailureKind::Network,
            Self::Cancelled { .. } => FailureKind::Cancelled,
            Self::GitHub(GitHubError::Forbidden { .. }) => FailureKind::Input,
            _ => FailureKind::Failed,
        }
    }

    /// A refusal, said in terms of the GitOps repository and its token.
    pub fn in_repository(self, repo: &str) -> Self {
        match self {
            Self::GitHub(GitHubError::Forbidden { operation, status, message, .. }) => {
                Self::NotAllowed { repo: repo.to_owned(), operation, status, message }
            }
            other => other,
        }
    }
}
