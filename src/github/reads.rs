//! What the pull-request preview reads from GitHub: in the app repository,
//! the pull request's merge base (compare-commits) and first parents
//! (git/get-commit); in the GitOps repository, values files (the contents
//! API) and the files a stage rendered on its branch (the trees API).

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use serde::Deserialize;

use super::client::OctocrabGitHub;
use super::git_data::{found, json, GitData, ShaOnly};
use super::GitHubError;
use crate::core::percent::percent_encode;

/// Files as (path relative to a directory, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

/// The app repository's history.
pub trait History: Send + Sync {
    /// The merge base of `base` and `head` (`merge_base_commit.sha`).
    fn merge_base<'a>(&'a self, base: &'a str, head: &'a str) -> BoxFuture<'a, Result<String, GitHubError>>;
    /// The first parent of `sha`; `None` for a root commit.
    fn first_parent<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, Result<Option<String>, GitHubError>>;
}

/// A repository's files at a ref.
pub trait RepoFiles: Send + Sync {
    /// `owner/name`, for messages.
    fn repository(&self) -> String;
    /// The bytes of the file at `path` on `git_ref`; `None` when there is none.
    fn file<'a>(&'a self, path: &'a str, git_ref: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GitHubError>>;
    /// Every file under the directory `dir` on `branch`, as (path relative to
    /// `dir`, bytes); `None` when the branch or the directory does not exist.
    fn files_under<'a>(&'a self, branch: &'a str, dir: &'a str) -> BoxFuture<'a, Result<Option<Files>, GitHubError>>;
}

/// Blobs read at once.
const PARALLEL_READS: usize = 8;

/// A repository path for a URL, each segment percent-encoded.
fn url_path(path: &str) -> String {
    path.split('/').map(percent_encode).collect::<Vec<_>>().join("/")
}

impl History for OctocrabGitHub {
    fn merge_base<'a>(&'a self, base: &'a str, head: &'a str) -> BoxFuture<'a, Result<String, GitHubError>> {
        async move {
            const OP: &str = "compare commits";
            #[derive(Deserialize)]
            struct Comparison {
                merge_base_commit: ShaOnly,
            }
            // One commit per page: only the merge base is wanted, not the list.
            let rest = format!("compare/{}...{}?per_page=1", percent_encode(base), percent_encode(head));
            let answer = match self.get(OP, &rest).await {
                // GitHub answers 404 for two commits without common history
                // as for a commit it does not know: neither is a permission.
                Err(GitHubError::Forbidden { status: 404, message, .. }) => {
                    let message = format!(
                        "{message}: GitHub found no comparison of {base}...{head}; the two commits share no history, or one of them is not in this repository"
                    );
                    return Err(GitHubError::Rejected { operation: OP, status: 404, message });
                }
                answer => answer?,
            };
            Ok(json::<Comparison>(OP, &answer.body)?.merge_base_commit.sha)
        }
        .boxed()
    }

    fn first_parent<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, Result<Option<String>, GitHubError>> {
        async move {
            const OP: &str = "get commit";
            #[derive(Deserialize)]
            struct Commit {
                parents: Vec<ShaOnly>,
            }
            let answer = self.get(OP, &format!("git/commits/{}", percent_encode(sha))).await?;
            Ok(json::<Commit>(OP, &answer.body)?.parents.into_iter().next().map(|p| p.sha))
        }
        .boxed()
    }
}

impl RepoFiles for OctocrabGitHub {
    fn repository(&self) -> String {
        self.full_name()
    }

    fn file<'a>(&'a self, path: &'a str, git_ref: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GitHubError>> {
        async move {
            const OP: &str = "get repository content";
            #[derive(Deserialize)]
            struct Content {
                #[serde(rename = "type")]
                kind: String,
                sha: String,
                #[serde(default)]
                content: Option<String>,
                #[serde(default)]
                encoding: Option<String>,
            }
            let rest = format!("contents/{}?ref={}", url_path(path), percent_encode(git_ref));
            let Some(answer) = found(self.get(OP, &rest).await)? else { return Ok(None) };
            // A directory answers with a list.
            let Ok(content) = serde_json::from_str::<Content>(&answer.body) else {
                return Err(GitHubError::Unexpected { operation: OP, message: format!("{path} is a directory, not a file") });
            };
            if content.kind != "file" {
                return Err(GitHubError::Unexpected { operation: OP, message: format!("{path} is a {}, not a file", content.kind) });
            }
            match (content.encoding.as_deref(), content.content) {
                (Some("base64"), Some(text)) => {
                    use base64::Engine;
                    let packed: String = text.split_ascii_whitespace().collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(packed)
                        .map(Some)
                        .map_err(|e| GitHubError::Unexpected { operation: OP, message: format!("{path}: bad base64: {e}") })
                }
                // Files over 1 MB come without content ("none"): read the blob.
                _ => self.blob(&content.sha).await.map(Some),
            }
        }
        .boxed()
    }

    fn files_under<'a>(&'a self, branch: &'a str, dir: &'a str) -> BoxFuture<'a, Result<Option<Files>, GitHubError>> {
        async move {
            let Some(head) = self.branch_head(branch).await? else { return Ok(None) };
            let mut tree = self.commit_tree(&head).await?;
            // Down the path one level at a time: a recursive listing of the
            // whole repository could be truncated, the directory's is small.
            for part in dir.split('/').filter(|p| !p.is_empty()) {
                let level = self.tree(&tree, false).await?;
                match level.entries.into_iter().find(|e| e.path == part && e.kind == "tree") {
                    Some(entry) => tree = entry.sha,
                    None => return Ok(None),
                }
            }
            let listing = self.tree(&tree, true).await?;
            if listing.truncated {
                return Err(GitHubError::Unexpected {
                    operation: "get tree",
                    message: format!("{dir} on {branch} holds more files than GitHub lists in one answer"),
                });
            }
            // A few blobs at a time: a rendered stage may hold hundreds of files.
            let blobs = listing.entries.into_iter().filter(|e| e.kind == "blob").map(|entry| async move {
                let bytes = self.blob(&entry.sha).await?;
                Ok::<_, GitHubError>((entry.path, bytes))
            });
            let mut files: Files = futures_util::stream::iter(blobs).buffered(PARALLEL_READS).try_collect().await?;
            files.sort();
            Ok(Some(files))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_segment_by_segment() {
        assert_eq!(url_path("apps/my app/values#1.yaml"), "apps/my%20app/values%231.yaml");
        assert_eq!(url_path("a/b.yaml"), "a/b.yaml");
    }
}
