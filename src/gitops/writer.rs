//! Writing records as one commit, the way GitHub's Git Data API allows it
//! without a clone: read the branch, plan, create the blobs that are new, a
//! tree on the head's tree (`sha: null` deletes), a commit, then move the
//! branch fast-forward only. Until the branch moves, nothing created is
//! reachable, so a failure or a cancellation at any point before leaves the
//! repository as it was.
//!
//! When someone else commits first, GitHub refuses the move (422, not a fast
//! forward); the whole plan is made again on the new head, because what the
//! other commit wrote may change it (it may even hold this release already).

use std::time::Duration;

use serde::Serialize;

use super::freight::{self, FreightExport};
use super::gate::{self, GateWrite};
use super::plan::Part;
use super::snapshot::Snapshot;
use super::target::{Author, BranchName};
use super::GitOpsError;
use crate::core::timestamp::Created;
use crate::github::git_data::{FileChange, GitData, NewCommit, NewContent, RefUpdate, Signature};

/// Attempts in all when the branch keeps moving underneath.
pub const MAX_ATTEMPTS: u32 = 8;
/// Text files up to this size travel inside the tree request...
const MAX_INLINE_FILE: usize = 1 << 20;
/// ...as long as the request stays this small; the rest become blobs first.
const MAX_INLINE_TOTAL: usize = 8 << 20;

/// One set of records to write.
#[derive(Debug, Clone)]
pub enum Record {
    Freight(FreightExport),
    Gate(GateWrite),
}

impl Record {
    async fn plan(&self, snapshot: &mut Snapshot<'_>) -> Result<Part, GitOpsError> {
        match self {
            Self::Freight(e) => freight::plan(e, &freight::read_state(snapshot, e).await?),
            Self::Gate(g) => gate::plan(g, &gate::read_state(snapshot, g).await?),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub repository: String,
    pub branch: String,
    /// The commit made; `None` when everything was already recorded.
    pub commit: Option<String>,
    /// Paths written, and paths that already held what they should.
    pub written: Vec<String>,
    pub kept: Vec<String>,
    pub notes: Vec<String>,
    /// Plans made: more than one when the branch moved meanwhile.
    pub attempts: u32,
}

impl Written {
    /// One line: the commit and what it holds, or "already recorded".
    pub fn describe(&self) -> String {
        match &self.commit {
            Some(c) => format!("commit {} on {} {}: {}", &c[..c.len().min(12)], self.repository, self.branch, self.written.join(", ")),
            None => format!("already recorded in {} {} ({})", self.repository, self.branch, self.kept.join(", ")),
        }
    }
}

pub struct Writer<'a> {
    pub api: &'a dyn GitData,
    pub branch: &'a BranchName,
    pub author: &'a Author,
    /// Author and committer date: fixed, so a re-sent commit is the same commit.
    pub date: Created,
    /// The workflow run, named in the commit message.
    pub run_url: Option<&'a str>,
    pub notify: &'a (dyn Fn(&str) + Send + Sync),
}

impl Writer<'_> {
    pub async fn write(&self, records: &[Record]) -> Result<Written, GitOpsError> {
        let repo = self.api.repository();
        self.attempt_all(records, &repo).await.map_err(|e| e.in_repository(&repo))
    }

    async fn attempt_all(&self, records: &[Record], repo: &str) -> Result<Written, GitOpsError> {
        let branch = self.branch.as_str();
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(head) = self.api.branch_head(branch).await? else {
                return Err(if self.api.repository_visible().await? {
                    GitOpsError::UnknownBranch { repo: repo.to_owned(), branch: branch.to_owned() }
                } else {
                    GitOpsError::RepositoryNotFound { repo: repo.to_owned() }
                });
            };
            let mut snapshot = Snapshot::at(self.api, head).await?;
            let mut part = Part::default();
            for r in records {
                part.merge(r.plan(&mut snapshot).await?);
            }
            let mut written = Written {
                repository: repo.to_owned(),
                branch: branch.to_owned(),
                commit: None,
                written: part.written.clone(),
                kept: part.kept.clone(),
                notes: part.notes.clone(),
                attempts: attempt,
            };
            if part.changes.is_empty() {
                return Ok(written);
            }
            let commit = self.commit(&mut snapshot, &part, records).await?;
            let moved = match self.api.move_branch(branch, &commit).await? {
                RefUpdate::Moved => true,
                RefUpdate::NotFastForward => false,
                // The answer was lost: the branch says whether the move happened.
                RefUpdate::Uncertain(why) => {
                    (self.notify)(&format!("{repo}: no answer to moving {branch} ({why}); reading it to see"));
                    self.api.branch_head(branch).await?.as_deref() == Some(commit.as_str())
                }
            };
            if moved {
                written.commit = Some(commit);
                return Ok(written);
            }
            if attempt < MAX_ATTEMPTS {
                (self.notify)(&format!(
                    "{repo}: {branch} moved while the commit was written (someone else committed); planning again on the new head (attempt {} of {MAX_ATTEMPTS})",
                    attempt + 1
                ));
                tokio::time::sleep(pause(attempt)).await;
            }
        }
        Err(GitOpsError::Busy { repo: repo.to_owned(), branch: branch.to_owned(), attempts: MAX_ATTEMPTS })
    }

    /// Blobs, tree and commit for `part` on the snapshot's head; the commit's sha.
    async fn commit(&self, snapshot: &mut Snapshot<'_>, part: &Part, records: &[Record]) -> Result<String, GitOpsError> {
        let mut changes = Vec::with_capacity(part.changes.len());
        let mut inline = Vec::new();
        let mut inline_bytes = 0;
        let mut created = std::collections::HashSet::new();
        for (path, sha) in &part.changes {
            let content = match sha {
                None => NewContent::Delete,
                Some(sha) if snapshot.knows_blob(sha) || created.contains(sha) => NewContent::Blob(sha.clone()),
                Some(sha) => {
                    let bytes = part.blobs.get(sha).map(Vec::as_slice).unwrap_or_default();
                    match std::str::from_utf8(bytes) {
                        Ok(text) if bytes.len() <= MAX_INLINE_FILE && inline_bytes + bytes.len() <= MAX_INLINE_TOTAL => {
                            inline_bytes += bytes.len();
                            inline.push((path, sha));
                            NewContent::Text(text.to_owned())
                        }
                        _ => {
                            let made = self.api.create_blob(bytes).await?;
                            if &made != sha {
                                return Err(GitOpsError::BlobMismatch { path: path.clone(), expected: sha.clone(), actual: made });
                            }
                            created.insert(sha.clone());
                            NewContent::Blob(made)
                        }
                    }
                }
            };
            changes.push(FileChange { path: path.clone(), content });
        }
        let tree = self.api.create_tree(&snapshot.root, &changes).await?;
        // GitHub made the inline files' blobs: check they hold these bytes
        // before anything points at them.
        let mut made = Snapshot::of_tree(self.api, tree.clone());
        for (path, sha) in inline {
            let found = made.entry(path).await?.filter(|e| e.kind == "blob").map(|e| e.sha);
            if found.as_deref() != Some(sha.as_str()) {
                let actual = found.unwrap_or_else(|| "nothing".into());
                return Err(GitOpsError::BlobMismatch { path: path.clone(), expected: sha.clone(), actual });
            }
        }
        let signature = Signature { name: self.author.name.clone(), email: self.author.email.clone(), date: self.date.to_string() };
        let commit = NewCommit {
            message: commit_message(records, part, self.run_url),
            tree,
            parents: vec![snapshot.head.clone()],
            author: signature.clone(),
            committer: signature,
        };
        Ok(self.api.create_commit(&commit).await?)
    }
}

/// Between attempts: growing, with jitter so that writers that collided once
/// do not collide again in step.
fn pause(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() % 200);
    Duration::from_millis(100 * u64::from(1u32 << attempt.min(4)) + u64::from(jitter))
}

/// What the commit records, where, and from which run.
pub fn commit_message(records: &[Record], part: &Part, run_url: Option<&str>) -> String {
    let mut subjects = Vec::new();
    let mut body = Vec::new();
    let mut tag = String::new();
    for r in records {
        match r {
            Record::Freight(e) => {
                tag = e.release.tag();
                subjects.push(format!("freight to {}", e.dir));
                let f = &e.release.facts;
                body.push(format!("Image: {}", f.image.with_digest(&f.image_digest)));
                if let Some((repo, digest)) = &f.capsule {
                    body.push(format!("Capsule: {}", repo.with_digest(digest)));
                }
            }
            Record::Gate(g) => {
                tag = g.record.revision.tag();
                subjects.push(format!("legacy gitflow {} gate", g.branch));
                body.push(format!("Merged to {} at {}", g.branch, g.record.merged_at));
            }
        }
    }
    let mut message = format!("Record {tag}: {}\n\n", subjects.join(", "));
    message.push_str("Written:\n");
    for path in &part.written {
        message.push_str(&format!("- {path}\n"));
    }
    for note in &part.notes {
        message.push_str(&format!("Note: {note}\n"));
    }
    message.push('\n');
    for line in body {
        message.push_str(&line);
        message.push('\n');
    }
    if let Some(url) = run_url {
        message.push_str(&format!("Run: {url}\n"));
    }
    message.push_str(&format!("\nWritten by release-capsule {}.\n", crate::core::TOOL_VERSION));
    message
}

#[cfg(test)]
mod tests;
