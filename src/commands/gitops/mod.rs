//! `export-freight` and `record-gate`: release records committed to a GitOps
//! repository through GitHub's Git Data API (spec sections 11 and 12). The
//! action runs the same flows after it publishes.

pub mod export;
pub mod gate;
pub mod settings;

use std::sync::Arc;

use crate::cancel::Cancel;
use crate::failure::Failure;
use crate::github::client::{Notify, OctocrabGitHub};
use crate::gitops::{Record, Writer, Written};
use crate::report;

use self::settings::GitOpsTarget;

/// Commits `records` to the target in one commit (or none, when they are
/// all there already). `cancel` stops it before the branch moves.
pub async fn write(t: &GitOpsTarget, records: &[Record], notify: Notify, cancel: &Cancel) -> Result<Written, Failure> {
    let api = OctocrabGitHub::new(&t.api_url, Some(&t.token), &t.repository.owner, &t.repository.name, notify.clone())
        .map_err(|e| Failure::failed(anyhow::Error::new(e)))?;
    let date = crate::clock::now_created().map_err(Failure::failed)?;
    let progress = move |line: &str| notify(false, line);
    let writer = Writer { api: &api, branch: &t.branch, author: &t.author, date, run_url: t.run_url.as_deref(), notify: &progress, cancel };
    writer.write(records).await.map_err(|e| Failure::new(e.kind(), e))
}

/// Progress lines on stderr, so that stdout stays the report.
pub fn stderr_notify() -> Notify {
    Arc::new(|debug_only, line| {
        if !debug_only {
            eprintln!("{line}");
        }
    })
}

pub fn print(w: &Written, json: bool) {
    if json {
        report::print_json(w);
        return;
    }
    match &w.commit {
        Some(commit) => {
            println!("committed {commit} to {} {}", w.repository, w.branch);
            for path in &w.written {
                println!("  wrote    {path}");
            }
        }
        None => println!("already recorded in {} {}: no commit", w.repository, w.branch),
    }
    for path in &w.kept {
        println!("  kept     {path}");
    }
    for note in &w.notes {
        println!("  note     {note}");
    }
}
