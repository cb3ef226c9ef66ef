//! Writing records as one commit, the way GitHub's Git Data API allows it
//! without a clone: read the branch, plan, create the blobs that are new, a
//! tree on the head's tree (`sha: null` deletes), a commit, then move the
//! branch fast-forward only. Until the branch moves, nothing created is
//! reachable, so a failure or a cancellation at any point before leaves the
//! repository as it was.
//!
//! Moving the branch is the one step whose outcome can be unclear (spec
//! section 11). GitHub refuses it with a 422 when someone else committed first
//! ("Update is not a fast forward"), and also, under concurrent writers, with
//! "Reference cannot be updated" or "Reference update failed"; a 5xx, a
//! timeout or a reset leaves it unknown. All of these are settled the same
//! way: by reading the branch. If it names our commit, the write is done. If
//! not, the whole plan is made again on whatever the branch holds now,
//! because what another commit wrote may change it (it may even hold these
//! records already, and then nothing more is committed). After the last
//! update a plan is made once more, so that a run gives up only when the
//! records are not on the branch. The commit is
//! content-addressed with a fixed date, so planning again on an unchanged
//! head makes the very same commit, and records land exactly once.

use std::time::Duration;

use serde::Serialize;

use super::freight::{self, FreightExport};
use super::gate::{self, GateWrite};
use super::plan::Part;
use super::snapshot::Snapshot;
use super::target::{Author, BranchName};
use super::GitOpsError;
use crate::cancel::Cancel;
use crate::core::timestamp::Created;
use crate::github::git_data::{FileChange, GitData, NewCommit, NewContent, RefUpdate, Signature};
use crate::registry::retry::{Backoff, Jitter};

/// Attempts in all when the branch keeps moving underneath (or GitHub keeps
/// refusing the update).
pub const MAX_ATTEMPTS: u32 = 10;
/// The pause between attempts: growing, and jittered so that writers that
/// collided once do not collide again in step (each seeds its own jitter).
const BETWEEN_ATTEMPTS: Backoff = Backoff {
    base: Duration::from_millis(200),
    cap: Duration::from_millis(3200),
    max_attempts: MAX_ATTEMPTS,
    retry_after_cap: Duration::ZERO,
};
/// Once cancelled, how long a ref update already sent may still take to
/// answer (and be read back): its outcome is worth reporting truthfully, and
/// the process must still exit within [`crate::cancel::EXIT_DEADLINE`].
const LANDING_AFTER_CANCEL: Duration = Duration::from_millis(2500);
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
    /// Stops the write before the branch moves; see [`Writer::write`].
    pub cancel: &'a Cancel,
}

/// Whether an attempt's commit is what the branch holds.
enum Landing {
    Ours,
    /// Not ours: why (the branch moved, or did not and GitHub said why), and
    /// whether it moved on to another commit, which may be on top of ours.
    Not {
        why: String,
        moved_on: bool,
    },
}

impl Writer<'_> {
    /// Writes `records` in one commit (or none, when they are all there).
    /// A cancellation stops it before the branch moves, with nothing
    /// committed; a branch update already sent is given
    /// [`LANDING_AFTER_CANCEL`] to answer, so that what is reported is true.
    pub async fn write(&self, records: &[Record]) -> Result<Written, GitOpsError> {
        let repo = self.api.repository();
        self.attempt_all(records, &repo).await.map_err(|e| e.in_repository(&repo))
    }

    async fn attempt_all(&self, records: &[Record], repo: &str) -> Result<Written, GitOpsError> {
        let branch = self.branch.as_str();
        let mut jitter = Jitter::new(crate::entropy::random_u64());
        let mut last = String::new();
        // Set when the last update sent may be on the branch under someone
        // else's commit: only the next plan can tell (it finds the records
        // there, or not), so until then a cancellation must not say that
        // nothing was committed.
        let mut open: Option<String> = None;
        // One plan more than updates: after the last update, a plan settles
        // whether the records are on the branch.
        for attempt in 1..=MAX_ATTEMPTS + 1 {
            let stopped = self.stopped_before_moving(open.as_deref());
            let (written, part, mut snapshot) = self.until_cancelled(repo, &stopped, self.plan(records, repo)).await?;
            if part.changes.is_empty() {
                return Ok(Written { attempts: attempt, ..written });
            }
            if attempt > MAX_ATTEMPTS {
                break;
            }
            let stopped = self.stopped_before_moving(None);
            let commit = self.until_cancelled(repo, &stopped, self.commit(&mut snapshot, &part, records)).await?;
            let parent = snapshot.head.clone();
            self.check_cancel(repo, &format!("before moving {branch} to {commit}; nothing was committed"))?;
            match self.land_even_if_cancelled(repo, &parent, &commit).await? {
                Landing::Ours => return Ok(Written { commit: Some(commit), attempts: attempt, ..written }),
                Landing::Not { why, moved_on } => {
                    open = moved_on.then(|| commit.clone());
                    last = why;
                }
            }
            if attempt < MAX_ATTEMPTS {
                (self.notify)(&format!("{repo}: {last}; planning again (attempt {} of {MAX_ATTEMPTS})", attempt + 1));
                let pause = BETWEEN_ATTEMPTS.delay(attempt - 1, None, &mut jitter);
                let stopped = self.stopped_before_moving(open.as_deref());
                self.until_cancelled(repo, &stopped, async {
                    tokio::time::sleep(pause).await;
                    Ok(())
                })
                .await?;
            }
        }
        Err(GitOpsError::Busy { repo: repo.to_owned(), branch: branch.to_owned(), attempts: MAX_ATTEMPTS, last })
    }

    /// What a cancellation before the branch moves leaves: nothing, unless
    /// an earlier update (to `open`) may be under a newer head.
    fn stopped_before_moving(&self, open: Option<&str>) -> String {
        let branch = self.branch.as_str();
        match open {
            None => format!("before moving {branch}; nothing was committed"),
            Some(commit) => format!(
                "before moving {branch} again; it moved on after this run's update to {commit} was sent, and may hold that \
                 commit (a re-run finds the records if so, and commits nothing twice)"
            ),
        }
    }

    /// Reads the branch and plans: what would be written, the changes, and
    /// the snapshot they were planned on.
    async fn plan(&self, records: &[Record], repo: &str) -> Result<(Written, Part, Snapshot<'_>), GitOpsError> {
        let branch = self.branch.as_str();
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
        let written = Written {
            repository: repo.to_owned(),
            branch: branch.to_owned(),
            commit: None,
            written: part.written.clone(),
            kept: part.kept.clone(),
            notes: part.notes.clone(),
            attempts: 0,
        };
        Ok((written, part, snapshot))
    }

    /// Moves the branch to `commit` (made on `parent`). Anything but a clear
    /// yes is settled by reading the branch.
    async fn land(&self, repo: &str, parent: &str, commit: &str) -> Result<Landing, GitOpsError> {
        let branch = self.branch.as_str();
        let why = match self.api.move_branch(branch, commit).await? {
            RefUpdate::Moved => return Ok(Landing::Ours),
            RefUpdate::Refused(why) | RefUpdate::Uncertain(why) => why,
        };
        (self.notify)(&format!("{repo}: moving {branch} to {commit} got {why}; reading the branch to see what happened"));
        let unresolved = |source: GitOpsError| GitOpsError::Unresolved {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            commit: commit.to_owned(),
            why: why.clone(),
            source: Box::new(source),
        };
        match self.api.branch_head(branch).await.map_err(|e| unresolved(e.into()))? {
            Some(head) if head == commit => {
                (self.notify)(&format!("{repo}: {branch} names {commit}: the update was applied"));
                Ok(Landing::Ours)
            }
            Some(head) if head == parent => Ok(Landing::Not { why: format!("{branch} did not move ({why})"), moved_on: false }),
            Some(head) => Ok(Landing::Not { why: format!("{branch} moved to {head} meanwhile ({why})"), moved_on: true }),
            None => Err(unresolved(GitOpsError::UnknownBranch { repo: repo.to_owned(), branch: branch.to_owned() })),
        }
    }

    /// [`Self::land`], which a cancellation does not cut short: an update
    /// already sent cannot be called back, so its outcome is waited for
    /// (within [`LANDING_AFTER_CANCEL`]) and reported as it is.
    async fn land_even_if_cancelled(&self, repo: &str, parent: &str, commit: &str) -> Result<Landing, GitOpsError> {
        let landing = self.land(repo, parent, commit);
        tokio::pin!(landing);
        tokio::select! {
            biased;
            result = &mut landing => result,
            () = self.cancel.cancelled() => match tokio::time::timeout(LANDING_AFTER_CANCEL, &mut landing).await {
                Ok(result) => result,
                Err(_) => Err(self.cancelled(
                    repo,
                    &format!(
                        "while {} was being moved to {commit}; the update was sent and may have been applied (a re-run finds it \
                         and commits nothing twice)",
                        self.branch
                    ),
                )),
            },
        }
    }

    fn cancelled(&self, repo: &str, when: &str) -> GitOpsError {
        let reason = self.cancel.reason().unwrap_or("request");
        GitOpsError::Cancelled { repo: repo.to_owned(), reason, when: when.to_owned() }
    }

    fn check_cancel(&self, repo: &str, when: &str) -> Result<(), GitOpsError> {
        if self.cancel.is_cancelled() {
            return Err(self.cancelled(repo, when));
        }
        Ok(())
    }

    /// `work`, dropped where it stands on a cancellation: until the branch
    /// moves, nothing it made is reachable.
    async fn until_cancelled<T>(
        &self,
        repo: &str,
        when: &str,
        work: impl std::future::Future<Output = Result<T, GitOpsError>>,
    ) -> Result<T, GitOpsError> {
        self.check_cancel(repo, when)?;
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(self.cancelled(repo, when)),
            result = work => result,
        }
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
