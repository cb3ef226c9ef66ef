//! The step's pull-request preview (spec section 13): after the package has
//! been validated, what the change does to each environment, on the same
//! check run. It writes nothing but its report and its diff files.

use std::io::Stdout;

use crate::cancel::Cancel;
use crate::commands::publish::PublishOutcome;
use crate::failure::Failure;
use crate::github::client::{Notify, OctocrabGitHub};
use crate::preview::{self, report, PreviewReport, PreviewSettings};

use super::problems::Problem;
use super::settings::preview::{PreviewPlan, PreviewRun};
use super::settings::ActionSettings;
use super::workflow_commands::Log;

/// What the preview came to on this run.
#[derive(Debug)]
pub enum PreviewStep {
    /// Not configured, or not for this event.
    Off,
    /// Configured, but not run: one neutral line that says why.
    Skipped(String),
    Done(PreviewReport),
    Failed(Failure),
}

/// What the image is called in the renders: by digest when the pull
/// request's image exists, else by its tag, as the stage would set it.
fn image_ref(s: &ActionSettings, o: &PublishOutcome) -> String {
    if o.image_missing {
        s.publish.capsule.image.with_tag(&s.sha().tag())
    } else {
        format!("{}@{}", o.report.image, o.report.image_digest)
    }
}

fn settings(s: &ActionSettings, run: &PreviewRun, o: &PublishOutcome) -> PreviewSettings {
    PreviewSettings {
        config: run.config.clone(),
        kind: s.publish.capsule.package_kind,
        package_dir: s.publish.capsule.package_path.clone(),
        package_repo_path: s.package_repo_path.clone(),
        head: s.sha().clone(),
        base: run.base.clone(),
        image: s.publish.capsule.image.clone(),
        image_ref: image_ref(s, o),
        capsule: s.publish.capsule.capsule.clone(),
        // The workflow's own signing key: its releases carry that signature,
        // and a base capsule without it is not one of them (spec section 8, check 5).
        public_key: s.publish.signing_key.as_ref().map(|key| key.public.clone()),
        tools: run.tools.clone(),
        output_dir: run.output_dir.clone(),
        timeout: preview::render::DEFAULT_TIMEOUT,
    }
}

async fn execute(s: &ActionSettings, run: &PreviewRun, o: &PublishOutcome, notify: Notify) -> Result<PreviewReport, Failure> {
    let gh = &s.github;
    let client = |token, owner: &str, repo: &str| {
        OctocrabGitHub::new(&gh.api_url, token, owner, repo, notify.clone())
            .map_err(|e| Failure::failed(anyhow::Error::new(e).context("the GitHub client")))
    };
    let history = client(gh.token.as_ref(), &gh.owner, &gh.repo)?;
    let repository = &run.config.gitops.repository;
    let gitops = client(Some(&run.gitops_token), &repository.owner, &repository.name)?;
    let registry = crate::commands::pull::connect(&s.publish.credentials)?;
    let work = crate::scratch::WorkDir::new()?;
    preview::run(&settings(s, run, o), &history, &gitops, &registry, work.path()).await
}

/// Runs the preview once publishing validated the package; logs what it found.
pub async fn preview_after_publish(
    s: &ActionSettings,
    published: &Result<PublishOutcome, Failure>,
    log: &mut Log<Stdout>,
    cancel: &Cancel,
    notify: Notify,
) -> PreviewStep {
    let run = match &s.preview {
        PreviewPlan::Off => return PreviewStep::Off,
        PreviewPlan::NotThisEvent(note) => {
            log.info(note);
            return PreviewStep::Off;
        }
        PreviewPlan::Skipped(line) => {
            log.info(line);
            return PreviewStep::Skipped(line.clone());
        }
        PreviewPlan::Run(run) => run,
    };
    let Ok(o) = published else {
        let line = "Preview not run: the package did not validate (see above).".to_owned();
        log.info(&line);
        return PreviewStep::Skipped(line);
    };
    log.group(&format!("Preview: {} environments", run.config.environments.len()));
    let result = cancel.guard("previewing", execute(s, run, o, notify)).await;
    log.end_group();
    match result {
        Ok(r) => {
            for env in &r.environments {
                let this = env.this_change.as_ref().map_or_else(|| "no base capsule".to_owned(), report::counts);
                let now = env.against_now.as_ref().map_or_else(|| "not compared".to_owned(), report::counts);
                log.info(&format!("preview {}: this change: {this}; against what runs now: {now}", env.name));
            }
            log.info(&format!("preview: the complete diff is in {}", run.output_shown));
            PreviewStep::Done(r)
        }
        Err(f) => {
            let step = PreviewStep::Failed(f);
            match (problem(s, &step), &step) {
                (Some(p), _) => log.annotate(&p.log_annotation()),
                (None, PreviewStep::Failed(f)) => log.error("release-capsule: preview failed", &f.to_string()),
                (None, _) => {}
            }
            step
        }
    }
}

/// A template error of the pull request's chart, where Helm names it, as a
/// package problem (the annotations of both the log and the check run).
pub fn problem(s: &ActionSettings, step: &PreviewStep) -> Option<Problem> {
    let PreviewStep::Failed(f) = step else { return None };
    let (error, at) = preview::template_error(f)?;
    let file = match s.package_repo_path.as_str() {
        "." => at.file.clone(),
        dir => format!("{dir}/{}", at.file),
    };
    Some(Problem { error: true, file, line: at.line, message: error.to_string() })
}

/// The step outputs the preview adds.
pub fn outputs(s: &ActionSettings, step: &PreviewStep) -> Vec<(&'static str, String)> {
    match (step, &s.preview) {
        (PreviewStep::Done(r), PreviewPlan::Run(run)) => {
            vec![("preview-changed", r.changed().to_string()), ("preview-path", run.output_shown.clone())]
        }
        _ => Vec::new(),
    }
}

/// Where the diffs are, as reports show it.
pub fn shown_path(s: &ActionSettings) -> String {
    match &s.preview {
        PreviewPlan::Run(run) => run.output_shown.clone(),
        _ => String::new(),
    }
}
