//! `release-capsule record-gate`: a legacy-gitflow gate record (spec
//! section 12) for a commit pushed to a gate branch.

use anyhow::Context;

use super::settings::{target, GitOpsTarget};
use crate::cli::RecordGateArgs;
use crate::core::ident::GitSha;
use crate::core::timestamp::Created;
use crate::failure::{Classify, Failure, FailureKind};
use crate::gitops::gate::GateWrite;
use crate::gitops::records::GateRecord;
use crate::gitops::Record;
use crate::settings::Env;

#[derive(Debug)]
pub struct GateSettings {
    pub gate: GateWrite,
    pub target: GitOpsTarget,
    pub json: bool,
}

impl GateSettings {
    pub fn resolve(args: &RecordGateArgs, env: Env, now: Created) -> Result<Self, anyhow::Error> {
        let revision: GitSha = args.sha.trim().parse().context("--sha")?;
        let merged_at = match &args.merged_at {
            Some(m) => m.trim().parse().context("--merged-at")?,
            None => now,
        };
        Ok(Self {
            gate: GateWrite {
                dir: target("--gate-path", &args.gate_path)?,
                branch: target("--branch", &args.branch)?,
                record: GateRecord { revision, merged_at },
            },
            target: GitOpsTarget::resolve(&args.gitops, env)?,
            json: args.gitops.json,
        })
    }
}

pub fn run(args: &RecordGateArgs, env: Env) -> Result<(), Failure> {
    let now = crate::clock::now_created().or_fail(FailureKind::Failed)?;
    let s = GateSettings::resolve(args, env, now).or_fail(FailureKind::Input)?;
    let s = &s;
    crate::commands::block_on_with_signals(|cancel| async move {
        let written = super::write(&s.target, &[Record::Gate(s.gate.clone())], super::stderr_notify(), &cancel).await?;
        super::print(&written, s.json);
        Ok(())
    })
}
