//! The commit loop against an in-memory Git Data API: a repository as flat
//! path → blob maps (one per tree), which is all the loop can observe. The
//! integration tests run the real thing against git itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::*;
use crate::cancel::Cancel;
use crate::core::ident::Digest;
use crate::core::package::PackageKind;
use crate::github::git_data::{NewContent, Tree, TreeEntry};
use crate::github::GitHubError;
use crate::gitops::freight::FreightRelease;
use crate::gitops::plan::blob_sha;
use crate::gitops::records::{FreightFacts, GateRecord};

#[derive(Default)]
struct Repo {
    blobs: BTreeMap<String, Vec<u8>>,
    trees: Vec<BTreeMap<String, String>>,
    /// (tree index, parent commit index)
    commits: Vec<(usize, Option<usize>)>,
    head: usize,
    /// Someone else commits this file just before each of our next N moves.
    interlopers: u32,
    /// What the next moves do instead of answering plainly.
    scripts: std::collections::VecDeque<Script>,
    /// Blobs created one by one, and tree requests.
    creates: u32,
    tree_requests: u32,
    moves: u32,
    /// Cancelled as the next move is answered (a SIGTERM meanwhile).
    cancel_on_move: Option<Cancel>,
    /// After a move is applied, this many reads of the branch still give the
    /// head before it (a read-back that lags).
    lagging_reads: u32,
    lagging_head: Option<usize>,
}

/// A ref update as GitHub may treat it.
#[derive(Debug, Clone, Copy)]
enum Script {
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

struct Fake(Mutex<Repo>);

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
    fn new(files: &[(&str, &[u8])]) -> Self {
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

    fn files_at_head(&self) -> BTreeMap<String, Vec<u8>> {
        let r = self.0.lock().unwrap();
        let tree = &r.trees[r.commits[r.head].0];
        tree.iter().map(|(p, sha)| (p.clone(), r.blobs[sha].clone())).collect()
    }

    fn commit_count(&self) -> usize {
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

const SHA: &str = "1111111111111111111111111111111111111111";

fn freight() -> Record {
    let facts = FreightFacts {
        revision: SHA.parse().unwrap(),
        image: "ghcr.io/acme/app".parse().unwrap(),
        image_digest: Digest::of(b"image"),
        package_kind: PackageKind::Kustomize,
        package_digest: Digest::of(b"package"),
        capsule: Some(("ghcr.io/acme/app-release-capsule".parse().unwrap(), Digest::of(b"capsule"))),
        created: "2026-11-20T10:11:12Z".parse().unwrap(),
    };
    let release = FreightRelease::new(facts, vec![("kustomization.yaml".into(), b"resources: []\n".to_vec())]);
    Record::Freight(FreightExport { dir: "w/freight".parse().unwrap(), release, overwrite: false, force_current: false })
}

fn gate() -> Record {
    Record::Gate(GateWrite {
        dir: "w/legacy-gitflow".parse().unwrap(),
        branch: "production".parse().unwrap(),
        record: GateRecord { revision: SHA.parse().unwrap(), merged_at: "2026-11-20T10:12:00Z".parse().unwrap() },
    })
}

fn write(fake: &Fake, records: &[Record]) -> Result<Written, GitOpsError> {
    write_with(fake, "main", &Cancel::never(), records)
}

/// Writes `records` on `branch` (time paused: pauses between attempts pass at once).
fn write_with(fake: &Fake, branch: &str, cancel: &Cancel, records: &[Record]) -> Result<Written, GitOpsError> {
    let branch: BranchName = branch.parse().unwrap();
    let author = Author::default();
    let notes = Mutex::new(Vec::<String>::new());
    let notify = |line: &str| notes.lock().unwrap().push(line.to_owned());
    let writer = Writer {
        api: fake,
        branch: &branch,
        author: &author,
        date: "2026-11-20T10:13:00Z".parse().unwrap(),
        run_url: Some("https://github.com/acme/app/actions/runs/1"),
        notify: &notify,
        cancel,
    };
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(writer.write(records))
}

#[test]
fn freight_and_gate_land_in_one_commit_and_a_second_run_makes_none() {
    let fake = Fake::new(&[("README.md", b"gitops\n")]);
    let w = write(&fake, &[freight(), gate()]).unwrap();
    assert!(w.commit.is_some());
    assert_eq!(fake.commit_count(), 2, "one new commit");
    let files = fake.files_at_head();
    let release = format!("w/freight/git-{SHA}");
    assert_eq!(files[&format!("{release}/kustomize/kustomization.yaml")], b"resources: []\n");
    assert_eq!(files[&format!("{release}/freight.yaml")], files["w/freight/current/freight.yaml"]);
    assert_eq!(files[&format!("w/legacy-gitflow/production/merged/git-{SHA}.yaml")], files["w/legacy-gitflow/production/current.yaml"]);
    assert_eq!(files["README.md"], b"gitops\n", "the rest of the tree is kept");
    assert_eq!(w.written.len(), 4);

    let (creates, trees) = {
        let r = fake.0.lock().unwrap();
        (r.creates, r.tree_requests)
    };
    assert_eq!((creates, trees), (0, 1), "text files go inside the one tree request");
    let again = write(&fake, &[freight(), gate()]).unwrap();
    assert_eq!(again.commit, None);
    assert!(again.written.is_empty());
    assert_eq!(again.kept.len(), 4);
    assert!(again.describe().starts_with("already recorded"), "{}", again.describe());
    assert_eq!(fake.commit_count(), 2);
    assert_eq!(fake.0.lock().unwrap().tree_requests, trees, "nothing created on a no-op");
}

#[test]
fn binary_files_are_created_as_blobs_and_each_only_once() {
    let fake = Fake::new(&[]);
    let Record::Freight(mut export) = freight() else { unreachable!() };
    let facts = export.release.facts.clone();
    export.release = FreightRelease::new(facts, vec![("logo.png".into(), vec![0x89, b'P', b'N', b'G', 0xff, 0x00])]);
    let w = write(&fake, &[Record::Freight(export)]).unwrap();
    assert!(w.commit.is_some());
    // In git-<sha>/ and current/: one blob.
    assert_eq!(fake.0.lock().unwrap().creates, 1);
    let files = fake.files_at_head();
    assert_eq!(files["w/freight/current/kustomize/logo.png"], [0x89, b'P', b'N', b'G', 0xff, 0x00]);
}

#[test]
fn a_concurrent_commit_is_kept_and_the_write_lands_on_top() {
    let fake = Fake::new(&[("README.md", b"gitops\n")]);
    fake.0.lock().unwrap().interlopers = 2;
    let w = write(&fake, &[freight()]).unwrap();
    assert_eq!(w.attempts, 3);
    assert_eq!(fake.commit_count(), 4, "two of theirs, then ours");
    let files = fake.files_at_head();
    assert_eq!(files.keys().filter(|p| p.starts_with("other/")).count(), 2, "their files survive");
    assert!(files.contains_key("w/freight/current/freight.yaml"));
}

#[test]
fn a_branch_that_never_settles_is_given_up_without_a_commit() {
    let fake = Fake::new(&[]);
    fake.0.lock().unwrap().interlopers = MAX_ATTEMPTS;
    let err = write(&fake, &[gate()]).unwrap_err();
    assert!(matches!(err, GitOpsError::Busy { attempts: MAX_ATTEMPTS, .. }), "{err}");
    assert!(!fake.files_at_head().keys().any(|p| p.starts_with("w/")));
}

fn scripted(scripts: &[Script]) -> Fake {
    let fake = Fake::new(&[("README.md", b"gitops\n")]);
    fake.0.lock().unwrap().scripts = scripts.iter().copied().collect();
    fake
}

#[test]
fn an_update_that_was_applied_is_found_by_reading_the_branch_not_resent() {
    for script in [Script::ApplyThenLose, Script::ApplyThenRefuse] {
        let fake = scripted(&[script]);
        let w = write(&fake, &[gate()]).unwrap();
        let head = format!("c{}", fake.0.lock().unwrap().head);
        assert_eq!(w.commit.as_deref(), Some(head.as_str()), "{script:?}: the commit that landed");
        assert_eq!((fake.0.lock().unwrap().moves, w.attempts), (1, 1), "{script:?}");
        assert_eq!(fake.commit_count(), 2, "{script:?}");
    }
}

#[test]
fn every_refusal_and_unknown_outcome_that_did_not_apply_is_planned_again_into_one_commit() {
    let refusals = [Script::Refuse("Update is not a fast forward"), Script::Refuse("Reference cannot be updated")];
    let fake = scripted(&[refusals[0], refusals[1], Script::Refuse("Reference update failed"), Script::Lose]);
    let w = write(&fake, &[freight(), gate()]).unwrap();
    assert_eq!(w.attempts, 5);
    assert_eq!(fake.commit_count(), 2, "one commit: the same one each time, landed once");
    let head = format!("c{}", fake.0.lock().unwrap().head);
    assert_eq!(w.commit.as_deref(), Some(head.as_str()));
}

#[test]
fn a_lost_answer_with_another_commit_on_top_is_found_recorded_not_written_twice() {
    let fake = scripted(&[Script::ApplyLoseThenInterloper]);
    let w = write(&fake, &[freight(), gate()]).unwrap();
    assert_eq!(w.commit, None, "planned again on the other commit: everything is there");
    assert_eq!(w.kept.len(), 4);
    assert_eq!(fake.commit_count(), 3, "ours, then theirs");
    assert_eq!(fake.0.lock().unwrap().moves, 1);
}

#[test]
fn a_last_update_that_landed_under_another_commit_is_reported_as_recorded_not_as_failed() {
    // Nine refusals, then the tenth update lands, its answer is lost, and
    // someone commits on top before the branch is read.
    let mut scripts = vec![Script::Refuse("Reference cannot be updated"); MAX_ATTEMPTS as usize - 1];
    scripts.push(Script::ApplyLoseThenInterloper);
    let fake = scripted(&scripts);
    let w = write(&fake, &[gate()]).unwrap();
    assert_eq!(w.commit, None, "the records are on the branch, under the other commit");
    assert_eq!(w.kept.len(), 2);
    assert_eq!(fake.commit_count(), 3, "ours, then theirs");
}

#[test]
fn a_cancellation_after_an_update_that_may_be_under_another_commit_does_not_say_nothing_was_committed() {
    let fake = scripted(&[Script::ApplyLoseThenInterloper]);
    let cancel = Cancel::never();
    fake.0.lock().unwrap().cancel_on_move = Some(cancel.clone());
    let err = write_with(&fake, "main", &cancel, &[gate()]).unwrap_err();
    assert_eq!(err.kind(), crate::failure::FailureKind::Cancelled);
    let text = err.to_string();
    assert!(!text.contains("nothing was committed"), "its commit is on the branch: {text}");
    assert!(text.contains("may hold that commit") && text.contains("a re-run"), "{text}");
    assert_eq!(fake.commit_count(), 3, "ours, then theirs");
}

#[test]
fn a_read_back_that_lags_behind_an_applied_update_still_ends_in_one_commit() {
    // Applied, answer lost; the next two reads still show the old head: the
    // writer plans again there, makes the very same commit, and the update
    // to where the branch already is succeeds.
    let fake = scripted(&[Script::ApplyThenLose]);
    fake.0.lock().unwrap().lagging_reads = 2;
    let w = write(&fake, &[freight(), gate()]).unwrap();
    let head = format!("c{}", fake.0.lock().unwrap().head);
    assert_eq!(w.commit.as_deref(), Some(head.as_str()));
    assert_eq!((w.attempts, fake.0.lock().unwrap().moves), (2, 2));
    assert_eq!(fake.commit_count(), 2, "one commit");
}

#[test]
fn a_branch_that_keeps_refusing_is_given_up_naming_the_last_answer() {
    let fake = scripted(&[Script::Refuse("Reference cannot be updated"); MAX_ATTEMPTS as usize]);
    let err = write(&fake, &[gate()]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("did not move (422 Reference cannot be updated)") && text.contains("nothing was committed"), "{text}");
    assert_eq!(fake.commit_count(), 1);
}

#[test]
fn a_cancelled_write_stops_before_the_branch_moves() {
    let fake = Fake::new(&[]);
    let cancel = Cancel::never();
    cancel.cancel("SIGTERM");
    let err = write_with(&fake, "main", &cancel, &[gate()]).unwrap_err();
    assert_eq!(err.kind(), crate::failure::FailureKind::Cancelled);
    assert!(err.to_string().starts_with("acme/gitops: cancelled by SIGTERM before moving main; nothing was committed"), "{err}");
    assert_eq!((fake.commit_count(), fake.0.lock().unwrap().moves), (1, 0));
}

#[test]
fn an_unknown_branch_is_named() {
    let fake = Fake::new(&[]);
    let err = write_with(&fake, "trunk", &Cancel::never(), &[gate()]).unwrap_err();
    assert_eq!(err.to_string(), "acme/gitops: has no branch trunk; create it, or name an existing one (gitops-branch, --gitops-branch)");
    assert_eq!(err.kind(), crate::failure::FailureKind::Input);
}

#[test]
fn commit_messages_say_what_where_and_which_run() {
    let fake = Fake::new(&[]);
    let w = write(&fake, &[freight(), gate()]).unwrap();
    let message = commit_message(&[freight(), gate()], &Part { written: w.written.clone(), ..Part::default() }, Some("https://x/runs/1"));
    assert!(message.starts_with(&format!("Record git-{SHA}: freight to w/freight, legacy gitflow production gate\n\n")), "{message}");
    assert!(message.contains(&format!("- w/freight/git-{SHA}/\n")), "{message}");
    assert!(message.contains("Capsule: ghcr.io/acme/app-release-capsule@sha256:"), "{message}");
    assert!(message.contains("Run: https://x/runs/1\n"), "{message}");
}
