//! The commit loop against an in-memory Git Data API ([`fake`]). The
//! integration tests run the real thing against git itself.

mod fake;

use std::sync::Mutex;

use self::fake::{Fake, Script};
use super::*;
use crate::cancel::Cancel;
use crate::core::ident::Digest;
use crate::core::package::PackageKind;
use crate::gitops::freight::FreightRelease;
use crate::gitops::records::{FreightFacts, GateRecord};

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
