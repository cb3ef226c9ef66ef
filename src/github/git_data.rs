//! GitHub's Git Data API, as much of it as writing a commit without a clone
//! takes: read a branch, its commit and trees (and a blob), create blobs, a
//! tree on a base tree, a commit, then move the branch fast-forward only.
//!
//! Text files travel inside the tree request (`content`), which GitHub turns
//! into blobs itself: one request, and one content-creating request against
//! GitHub's secondary rate limit, instead of one per file. Other files are
//! created as blobs first (base64).
//!
//! What may be sent twice: blobs, trees and commits are content-addressed
//! objects, and every commit here carries explicit author and committer dates,
//! so sending one of those creates again yields the very same object, which
//! nothing references until the branch moves. So they are retried like reads.
//! Moving the branch is not: an answer lost on the way back leaves the writer
//! to read the branch and see ([`RefUpdate::Uncertain`]).

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::Method;
use serde::{Deserialize, Serialize};

use super::client::OctocrabGitHub;
use super::GitHubError;

/// One entry of a tree as GitHub lists it (`type` is blob, tree or commit).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    pub path: String,
    pub mode: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tree {
    pub sha: String,
    #[serde(rename = "tree")]
    pub entries: Vec<TreeEntry>,
    #[serde(default)]
    pub truncated: bool,
}

/// A file to set in a new tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub content: NewContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewContent {
    /// An existing blob.
    Blob(String),
    /// Text GitHub writes as a blob itself: no request per file.
    Text(String),
    Delete,
}

impl Serialize for FileChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut e = s.serialize_struct("FileChange", 4)?;
        e.serialize_field("path", &self.path)?;
        // Regular files only: capsule files are all mode 0644 (spec section 2).
        e.serialize_field("mode", "100644")?;
        e.serialize_field("type", "blob")?;
        match &self.content {
            NewContent::Blob(sha) => e.serialize_field("sha", sha)?,
            NewContent::Text(text) => e.serialize_field("content", text)?,
            // `null` is how the API deletes a path.
            NewContent::Delete => e.serialize_field("sha", &None::<String>)?,
        }
        e.end()
    }
}

/// Author or committer of a new commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub name: String,
    pub email: String,
    /// RFC 3339: fixed by the caller, so that the commit is reproducible.
    pub date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCommit {
    pub message: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Signature,
    pub committer: Signature,
}

/// How moving a branch went. Only [`RefUpdate::Moved`] is an answer; the
/// others leave the writer to read the branch and see (spec section 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefUpdate {
    Moved,
    /// GitHub refused it with a 422: "Update is not a fast forward" (someone
    /// else moved it first), but also "Reference cannot be updated" or
    /// "Reference update failed" under concurrent writers. GitHub's message.
    Refused(String),
    /// No answer, or a 5xx or timeout: the update may or may not have been
    /// applied.
    Uncertain(String),
}

/// What an answer to the ref update means. A refusal or an unknown outcome
/// is not an error: the branch itself says what happened.
pub fn ref_update_outcome(result: Result<(), GitHubError>) -> Result<RefUpdate, GitHubError> {
    match result {
        Ok(()) => Ok(RefUpdate::Moved),
        Err(GitHubError::Rejected { status: 422, message, .. }) => Ok(RefUpdate::Refused(format!("422 {message}"))),
        Err(GitHubError::Rejected { status, message, .. }) if status >= 500 || status == 408 => {
            Ok(RefUpdate::Uncertain(format!("{status} {message}")))
        }
        Err(GitHubError::Transport { message, .. }) => Ok(RefUpdate::Uncertain(message)),
        Err(e) => Err(e),
    }
}

/// What writing a commit through the Git Data API needs.
pub trait GitData: Send + Sync {
    /// `owner/name`, for messages.
    fn repository(&self) -> String;
    /// The commit `branch` points at; `None` when GitHub knows no such branch
    /// (or the repository is hidden from the token).
    fn branch_head<'a>(&'a self, branch: &'a str) -> BoxFuture<'a, Result<Option<String>, GitHubError>>;
    /// Whether the token can see the repository at all.
    fn repository_visible(&self) -> BoxFuture<'_, Result<bool, GitHubError>>;
    /// The root tree of a commit.
    fn commit_tree<'a>(&'a self, commit: &'a str) -> BoxFuture<'a, Result<String, GitHubError>>;
    fn tree<'a>(&'a self, sha: &'a str, recursive: bool) -> BoxFuture<'a, Result<Tree, GitHubError>>;
    fn blob<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, Result<Vec<u8>, GitHubError>>;
    /// Creates a blob; its sha as GitHub computed it.
    fn create_blob<'a>(&'a self, content: &'a [u8]) -> BoxFuture<'a, Result<String, GitHubError>>;
    fn create_tree<'a>(&'a self, base_tree: &'a str, changes: &'a [FileChange]) -> BoxFuture<'a, Result<String, GitHubError>>;
    fn create_commit<'a>(&'a self, commit: &'a NewCommit) -> BoxFuture<'a, Result<String, GitHubError>>;
    /// Moves `branch` to `sha`, fast-forward only (never forced).
    fn move_branch<'a>(&'a self, branch: &'a str, sha: &'a str) -> BoxFuture<'a, Result<RefUpdate, GitHubError>>;
}

pub(super) fn json<T: serde::de::DeserializeOwned>(operation: &'static str, body: &str) -> Result<T, GitHubError> {
    serde_json::from_str(body).map_err(|e| GitHubError::Unexpected { operation, message: format!("an answer that does not parse: {e}") })
}

#[derive(Deserialize)]
pub(super) struct ShaOnly {
    pub(super) sha: String,
}

/// A 404 as "not there" rather than as an error.
pub(super) fn found<T>(result: Result<T, GitHubError>) -> Result<Option<T>, GitHubError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(GitHubError::Forbidden { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl OctocrabGitHub {
    /// Creates a content-addressed object (blob, tree, commit): sending it
    /// again makes the same object, so it is retried like a read. Its sha.
    async fn create<B: Serialize + Sync>(&self, operation: &'static str, rest: &str, body: &B) -> Result<String, GitHubError> {
        let a = self.call(operation, "contents", Method::POST, &self.route(rest), Some(body), true).await?;
        Ok(json::<ShaOnly>(operation, &a.body)?.sha)
    }
}

impl GitData for OctocrabGitHub {
    fn repository(&self) -> String {
        self.full_name()
    }

    fn branch_head<'a>(&'a self, branch: &'a str) -> BoxFuture<'a, Result<Option<String>, GitHubError>> {
        async move {
            const OP: &str = "get branch";
            #[derive(Deserialize)]
            struct Ref {
                object: ShaOnly,
            }
            match found(self.get(OP, &format!("git/ref/heads/{branch}")).await)? {
                Some(a) => Ok(Some(json::<Ref>(OP, &a.body)?.object.sha)),
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn repository_visible(&self) -> BoxFuture<'_, Result<bool, GitHubError>> {
        async move {
            // The contents of the default branch's root: 404 for a repository
            // the token cannot see (GitHub does not say 403 there).
            Ok(found(self.get("get repository contents", "contents/").await)?.is_some())
        }
        .boxed()
    }

    fn commit_tree<'a>(&'a self, commit: &'a str) -> BoxFuture<'a, Result<String, GitHubError>> {
        async move {
            const OP: &str = "get commit";
            #[derive(Deserialize)]
            struct Commit {
                tree: ShaOnly,
            }
            let a = self.get(OP, &format!("git/commits/{commit}")).await?;
            Ok(json::<Commit>(OP, &a.body)?.tree.sha)
        }
        .boxed()
    }

    fn tree<'a>(&'a self, sha: &'a str, recursive: bool) -> BoxFuture<'a, Result<Tree, GitHubError>> {
        async move {
            let query = if recursive { "?recursive=1" } else { "" };
            let a = self.get("get tree", &format!("git/trees/{sha}{query}")).await?;
            json("get tree", &a.body)
        }
        .boxed()
    }

    fn blob<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, Result<Vec<u8>, GitHubError>> {
        async move {
            const OP: &str = "get blob";
            #[derive(Deserialize)]
            struct Blob {
                content: String,
                encoding: String,
            }
            let a = self.get(OP, &format!("git/blobs/{sha}")).await?;
            let blob: Blob = json(OP, &a.body)?;
            match blob.encoding.as_str() {
                "base64" => {
                    use base64::Engine;
                    // GitHub wraps base64 at 60 columns.
                    let packed: String = blob.content.split_ascii_whitespace().collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(packed)
                        .map_err(|e| GitHubError::Unexpected { operation: OP, message: format!("blob {sha}: bad base64: {e}") })
                }
                "utf-8" => Ok(blob.content.into_bytes()),
                other => Err(GitHubError::Unexpected { operation: OP, message: format!("blob {sha}: unknown encoding {other:?}") }),
            }
        }
        .boxed()
    }

    fn create_blob<'a>(&'a self, content: &'a [u8]) -> BoxFuture<'a, Result<String, GitHubError>> {
        async move {
            use base64::Engine;
            #[derive(Serialize)]
            struct Body {
                content: String,
                encoding: &'static str,
            }
            let body = Body { content: base64::engine::general_purpose::STANDARD.encode(content), encoding: "base64" };
            self.create("create blob", "git/blobs", &body).await
        }
        .boxed()
    }

    fn create_tree<'a>(&'a self, base_tree: &'a str, changes: &'a [FileChange]) -> BoxFuture<'a, Result<String, GitHubError>> {
        async move {
            #[derive(Serialize)]
            struct Body<'b> {
                base_tree: &'b str,
                tree: &'b [FileChange],
            }
            self.create("create tree", "git/trees", &Body { base_tree, tree: changes }).await
        }
        .boxed()
    }

    fn create_commit<'a>(&'a self, commit: &'a NewCommit) -> BoxFuture<'a, Result<String, GitHubError>> {
        self.create("create commit", "git/commits", commit).boxed()
    }

    fn move_branch<'a>(&'a self, branch: &'a str, sha: &'a str) -> BoxFuture<'a, Result<RefUpdate, GitHubError>> {
        async move {
            #[derive(Serialize)]
            struct Body<'b> {
                sha: &'b str,
                force: bool,
            }
            let path = self.route(&format!("git/refs/heads/{branch}"));
            // Not re-sent by the client (only GitHub's refusals to do anything,
            // rate limits, are): what happened is read from the branch.
            let sent = self.call("update branch", "contents", Method::PATCH, &path, Some(&Body { sha, force: false }), false).await;
            ref_update_outcome(sent.map(drop))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_422_and_every_unknown_outcome_of_a_ref_update_is_read_from_the_branch() {
        let rejected = |status, message: &str| Err(GitHubError::Rejected { operation: "update branch", status, message: message.into() });
        for wording in ["Update is not a fast forward", "Reference cannot be updated", "Reference update failed"] {
            assert_eq!(ref_update_outcome(rejected(422, wording)).unwrap(), RefUpdate::Refused(format!("422 {wording}")));
        }
        for status in [500, 502, 503, 504, 408] {
            assert!(matches!(ref_update_outcome(rejected(status, "Server Error")).unwrap(), RefUpdate::Uncertain(_)), "{status}");
        }
        let reset = Err(GitHubError::Transport { operation: "update branch", message: "connection reset".into() });
        assert_eq!(ref_update_outcome(reset).unwrap(), RefUpdate::Uncertain("connection reset".into()));
        assert_eq!(ref_update_outcome(Ok(())).unwrap(), RefUpdate::Moved);
        // A token that may not write is the user's to fix, not something to read back.
        let forbidden =
            Err(GitHubError::Forbidden { operation: "update branch", status: 403, message: "no".into(), permission: "contents" });
        assert!(ref_update_outcome(forbidden).is_err());
    }

    #[test]
    fn deletions_send_a_null_sha_and_text_goes_inline() {
        let changes = [
            FileChange { path: "a/b.yaml".into(), content: NewContent::Blob("3b18e512dba79e4c8300dd08aeb37f8e728b8dad".into()) },
            FileChange { path: "a/c.yaml".into(), content: NewContent::Delete },
            FileChange { path: "a/d.yaml".into(), content: NewContent::Text("x: \"y\"\n".into()) },
        ];
        assert_eq!(
            serde_json::to_string(&changes).unwrap(),
            r#"[{"path":"a/b.yaml","mode":"100644","type":"blob","sha":"3b18e512dba79e4c8300dd08aeb37f8e728b8dad"},{"path":"a/c.yaml","mode":"100644","type":"blob","sha":null},{"path":"a/d.yaml","mode":"100644","type":"blob","content":"x: \"y\"\n"}]"#
        );
    }
}
