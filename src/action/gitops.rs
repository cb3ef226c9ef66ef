//! The step's GitOps records: once the capsule is in the registry, its
//! release as Git freight and this push's gate record, in one commit. The
//! freight is read back from the registry by digest and verified, the same
//! flow as `release-capsule export-freight`, so Git holds what Kargo and Flux
//! will pull.

use std::io::Stdout;

use crate::cancel::Cancel;
use crate::cli::OnConflict;
use crate::commands::gitops::export::freight_from_capsule;
use crate::commands::publish::PublishOutcome;
use crate::core::reference::Reference;
use crate::failure::Failure;
use crate::github::client::Notify;
use crate::gitops::freight::FreightExport;
use crate::gitops::gate::GateWrite;
use crate::gitops::records::GateRecord;
use crate::gitops::{Record, Written};

use super::settings::gitops::GitOpsPlan;
use super::settings::ActionSettings;
use super::workflow_commands::Log;

/// Whether publishing left a release to record: pushed or already there.
pub fn has_release(o: &PublishOutcome) -> bool {
    !o.dry_run && !o.image_missing
}

/// The records, once publishing left a release to record: logged in their
/// own group, with their notes as warnings. `None` when there was nothing to do.
pub async fn record_after_publish(
    s: &ActionSettings,
    published: &Result<PublishOutcome, Failure>,
    log: &mut Log<Stdout>,
    cancel: &Cancel,
    notify: Notify,
) -> Option<Result<Written, Failure>> {
    for note in &s.gitops_notes {
        log.info(note);
    }
    let (Some(plan), Ok(o)) = (&s.gitops, published) else { return None };
    if !has_release(o) {
        return None;
    }
    log.group(&format!("Record git-{} in {}", s.sha().short(), plan.target.repository));
    // The writer stops at a cancellation itself, before the branch moves
    // (an update already sent is waited for, so that the outcome is true).
    let written = record(s, plan, o, notify, cancel).await;
    log.end_group();
    match &written {
        Ok(w) => {
            log.info(&format!("GitOps records: {}", w.describe()));
            for note in &w.notes {
                log.warning("release-capsule: GitOps records", note);
            }
        }
        Err(f) => log.error("release-capsule: GitOps records not written", &f.to_string()),
    }
    Some(written)
}

async fn record(s: &ActionSettings, plan: &GitOpsPlan, o: &PublishOutcome, notify: Notify, cancel: &Cancel) -> Result<Written, Failure> {
    let sha = s.sha();
    let mut records = Vec::new();
    if let Some(dir) = &plan.freight {
        let digest = o.report.digest.parse().map_err(|e| Failure::failed(anyhow::Error::new(e).context("the published digest")))?;
        let capsule =
            Reference { repo: s.publish.capsule.capsule.clone(), tag: Some(crate::core::tag::Tag::from(sha)), digest: Some(digest) };
        let client = crate::commands::pull::connect(&s.publish.credentials)?;
        let release = cancel.guard("verifying the capsule for the GitOps records", freight_from_capsule(&client, &capsule, None)).await?;
        let overwrite = s.publish.on_conflict == OnConflict::Overwrite;
        records.push(Record::Freight(FreightExport { dir: dir.clone(), release, overwrite, force_current: false }));
    }
    if let Some(gate) = &plan.gate {
        let merged_at = match gate.merged_at {
            Some(t) => t,
            None => crate::clock::now_created().map_err(Failure::failed)?,
        };
        let record = GateRecord { revision: sha.clone(), merged_at };
        records.push(Record::Gate(GateWrite { dir: gate.dir.clone(), branch: gate.branch.clone(), record }));
    }
    crate::commands::gitops::write(&plan.target, &records, notify, cancel).await
}
