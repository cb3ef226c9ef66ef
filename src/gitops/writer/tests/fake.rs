//! An in-memory Git Data API for the commit loop's tests: a repository as
//! flat path → blob maps (one per tree), content-addressed as GitHub is,
//! which is all the loop can observe; scripted ref updates stand for what
//! GitHub may answer under concurrent writers and faults.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::super::*;
use crate::cancel::Cancel;
use crate::github::git_data::{NewContent, Tree, TreeEntry};
use crate::github::GitHubError;
use crate::gitops::plan::blob_sha;

#[derive(Default)]
pub(super) struct Repo {
    pub(super) blobs: BTreeMap<String, Vec<u8>>,
    pub(super) trees: Vec<BTreeMap<String, String>>,
    /// (tree index, parent commit index)
    pub(super) commits: Vec<(usize, Option<usize>)>,
    pub(super) head: usize,
    /// Someone else commits this file just before each of our next N moves.
    pub(super) interlopers: u32,
    /// What the next moves do instead of answering plainly.
    pub(super) scripts: std::collections::VecDeque<Script>,
    /// Blobs created one by one, and tree requests.
    pub(super) creates: u32,
    pub(super) tree_requests: u32,
    pub(super) moves: u32,
    /// Cancelled as the next move is answered (a SIGTERM meanwhile).
    pub(super) cancel_on_move: Option<Cancel>,
    /// After a move is applied, this many reads of the branch still give the
    /// head before it (a read-back that lags).
    pub(super) lagging_reads: u32,
    pub(super) lagging_head: Option<usize>,
}

/// A ref update as GitHub may treat it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Script {
    /// Applied, but the answer is lost (a reset, a 5xx after the fact).
    ApplyThenLose,
    /// Applied, then refused all the same (422 "Reference update failed").
    ApplyThenRefuse,
    /// Not applied; a 422 with this wording.
    Refuse(&'static str),
    /// Not applied; no answer (a 5xx or a reset before it was applied).
    Lose,
    /// Applied, answer lost, and someone else commits on top before we read.
    ApplyLoseThenInterloper,
}

pub(super) struct Fake(pub(super) Mutex<Repo>);

impl Repo {
    /// Someone else's commit on top of the head.
    fn interlope(&mut self) {
        let mut tree = self.trees[self.commits[self.head].0].clone();
        let n = self.commits.len();
        let content = format!("someone else {n}\n").into_bytes();
        tree.insert(format!("other/{n}.txt"), blob_sha(&content));
        self.blobs.insert(blob_sha(&content), content);
        self.trees.push(tree);
        let (parent, tree) = (self.head, self.trees.len() - 1);
        self.commits.push((tree, Some(parent)));
        self.head = n;
    }
}

fn idx(id: &str, prefix: char) -> usize {
    id.trim_start_matches(prefix).split(':').next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

impl Fake {
    pub(super) fn new(files: &[(&str, &[u8])]) -> Self {
        let mut repo = Repo::default();
        let mut tree = BTreeMap::new();
        for (path, bytes) in files {
            tree.insert(path.to_string(), blob_sha(bytes));
            repo.blobs.insert(blob_sha(bytes), bytes.to_vec());
        }
        repo.trees.push(tree);
        repo.commits.push((0, None));
        Self(Mutex::new(repo))
    }

    pub(super) fn files_at_head(&self) -> BTreeMap<String, Vec<u8>> {
        let r = self.0.lock().unwrap();
        let tree = &r.trees[r.commits[r.head].0];
        tree.iter().map(|(p, sha)| (p.clone(), r.blobs[sha].clone())).collect()
    }

    pub(super) fn commit_count(&self) -> usize {
        let r = self.0.lock().unwrap();
        let mut n = 0;
        let mut c = Some(r.head);
        while let Some(i) = c {
            n += 1;
            c = r.commits[i].1;
        }
        n
    }
}

fn ok<T: Send + 'static>(v: T) -> BoxFuture<'static, Result<T, GitHubError>> {
    async move { Ok(v) }.boxed()
}

impl GitData for Fake {
    fn repository(&self) -> String {
        "acme/gitops".into()
    }
    fn branch_head<'a>(&'a self, branch: &'a str) -> BoxFuture<'a, Result<Option<String>, GitHubError>> {
        let mut r = self.0.lock().unwrap();
        let head = match r.lagging_head {
            Some(old) if r.lagging_reads > 0 => {
                r.lagging_reads -= 1;
                old
            }
            _ => r.head,
        };
        ok((branch == "main").then(|| format!("c{head}")))
    }
    fn repository_visible(&self) -> BoxFuture<'_, Result<bool, GitHubError>> {
        ok(true)
    }
    fn commit_tree<'a>(&'a self, commit: &'a str) -> BoxFuture<'a, Result<String, GitHubError>> {
        let r = self.0.lock().unwrap();
        ok(format!("t{}:", r.commits[idx(commit, 'c')].0))
    }
    fn tree<'a>(&'a self, sha: &'a str, recursive: bool) -> BoxFuture<'a, Result<Tree, GitHubError>> {
        let r = self.0.lock().unwrap();
        let (i, prefix) = (idx(sha, 't'), sha.split_once(':').map_or("", |(_, p)| p));
        let under = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let mut entries: BTreeMap<String, TreeEntry> = BTreeMap::new();
        for (path, blob) in r.trees[i].iter().filter_map(|(p, s)| p.strip_prefix(&under).map(|rest| (rest, s))) {
            match path.split_once('/') {
                Some((dir, _)) if !recursive => {
                    let sub = format!("t{i}:{under}{dir}");
                    entries.insert(dir.into(), TreeEntry { path: dir.into(), mode: "040000".into(), kind: "tree".into(), sha: sub });
                }
                _ => {
                    let e = TreeEntry { path: path.into(), mode: "100644".into(), kind: "blob".into(), sha: blob.clone() };
                    entries.insert(path.into(), e);
                }
            }
        }
        ok(Tree { sha: sha.to_owned(), entries: entries.into_values().collect(), truncated: false })
    }
    fn blob<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, Result<Vec<u8>, GitHubError>> {
        ok(self.0.lock().unwrap().blobs[sha].clone())
    }
    fn create_blob<'a>(&'a self, content: &'a [u8]) -> BoxFuture<'a, Result<String, GitHubError>> {
        let mut r = self.0.lock().unwrap();
        r.creates += 1;
        r.blobs.insert(blob_sha(content), content.to_vec());
        ok(blob_sha(content))
    }
    fn create_tree<'a>(&'a self, base: &'a str, changes: &'a [FileChange]) -> BoxFuture<'a, Result<String, GitHubError>> {
        let mut r = self.0.lock().unwrap();
        let mut tree = r.trees[idx(base, 't')].clone();
        r.tree_requests += 1;
        for c in changes {
            match &c.content {
                NewContent::Blob(sha) => {
                    assert!(r.blobs.contains_key(sha), "a tree may only name blobs that exist");
                    tree.insert(c.path.clone(), sha.clone());
                }
                NewContent::Text(text) => {
                    r.blobs.insert(blob_sha(text.as_bytes()), text.clone().into_bytes());
                    tree.insert(c.path.clone(), blob_sha(text.as_bytes()));
                }
                NewContent::Delete => assert!(tree.remove(&c.path).is_some(), "deleting {} that is not there", c.path),
            }
        }
        // Content-addressed, as git's objects are.
        let i = r.trees.iter().position(|t| *t == tree).unwrap_or_else(|| {
            r.trees.push(tree);
            r.trees.len() - 1
        });
        ok(format!("t{i}:"))
    }
    fn create_commit<'a>(&'a self, commit: &'a NewCommit) -> BoxFuture<'a, Result<String, GitHubError>> {
        let mut r = self.0.lock().unwrap();
        assert!(commit.message.starts_with("Record git-"), "{}", commit.message);
        // Content-addressed too (the writer fixes message and dates).
        let made = (idx(&commit.tree, 't'), Some(idx(&commit.parents[0], 'c')));
        let i = r.commits.iter().position(|c| *c == made).unwrap_or_else(|| {
            r.commits.push(made);
            r.commits.len() - 1
        });
        ok(format!("c{i}"))
    }
    fn move_branch<'a>(&'a self, _branch: &'a str, sha: &'a str) -> BoxFuture<'a, Result<RefUpdate, GitHubError>> {
        let mut r = self.0.lock().unwrap();
        r.moves += 1;
        if let Some(cancel) = r.cancel_on_move.take() {
            cancel.cancel("SIGTERM");
        }
        if r.interlopers > 0 {
            r.interlopers -= 1;
            r.interlope();
        }
        let new = idx(sha, 'c');
        let fast_forward = r.commits[new].1 == Some(r.head) || new == r.head;
        let script = r.scripts.pop_front();
        let lost = || RefUpdate::Uncertain("502 Server Error".into());
        match script {
            Some(Script::Refuse(wording)) => return ok(RefUpdate::Refused(format!("422 {wording}"))),
            Some(Script::Lose) => return ok(lost()),
            _ if !fast_forward => return ok(RefUpdate::Refused("422 Update is not a fast forward".into())),
            _ => {}
        }
        r.lagging_head = Some(r.head);
        r.head = new;
        match script {
            Some(Script::ApplyThenLose) => ok(lost()),
            Some(Script::ApplyThenRefuse) => ok(RefUpdate::Refused("422 Reference update failed".into())),
            Some(Script::ApplyLoseThenInterloper) => {
                r.interlope();
                ok(lost())
            }
            _ => ok(RefUpdate::Moved),
        }
    }
}
