//! `release-capsule action`: the GitHub Action step. It masks the secrets,
//! resolves the inputs once, opens a check run, publishes, and then writes
//! the outputs, the job summary, the annotations and the final check run and
//! commit status. Once the capsule is in the registry it writes the GitOps
//! records, if any. Only a failed publish, failed records (or bad input) fail
//! the step; reporting problems become warnings.

pub mod commit_dates;
pub mod gitops;
pub mod outputs;
pub mod preview;
pub mod problems;
pub mod reporting;
pub mod settings;
pub mod summary;
pub mod verdict;
pub mod workflow_commands;

use std::io::Stdout;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::commands::publish::{publish, CommitDateSource, PublishOutcome};
use crate::failure::{Classify, Failure, FailureKind};
use crate::github::client::{Notify, OctocrabGitHub};
use crate::github::{CheckAnnotation, ChecksApi};
use crate::settings::Env;

use self::commit_dates::GitHubCommitDates;
use self::reporting::Reporter;
use self::settings::ActionSettings;
use self::verdict::Verdict;
use self::workflow_commands::Log;

fn append_summary(log: &mut Log<Stdout>, file: Option<&PathBuf>, markdown: &str) -> Result<(), Failure> {
    let Some(path) = file else {
        log.debug("GITHUB_STEP_SUMMARY is not set: no job summary");
        return Ok(());
    };
    outputs::append_summary(path, markdown).or_fail(FailureKind::Failed)
}

/// Reads the payload file GITHUB_EVENT_PATH names, if any.
fn read_payload(env: Env) -> Result<Option<String>, Failure> {
    let Some(path) = env("GITHUB_EVENT_PATH").filter(|p| !p.trim().is_empty()) else { return Ok(None) };
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("GITHUB_EVENT_PATH {path}: cannot read the event payload"))))
}

pub fn run(env: Env) -> Result<(), Failure> {
    let mut log = Log::new(std::io::stdout(), settings::runner_debug(env));
    // First of all: nothing printed after this can show a secret.
    for secret in settings::secrets(env) {
        log.mask(&secret);
    }
    let resolved = read_payload(env).and_then(|payload| settings::resolve(env, payload.as_deref()).or_fail(FailureKind::Input));
    let s = match resolved {
        Ok(s) => s,
        Err(failure) => {
            let message = failure.to_string();
            log.error("release-capsule: bad input", &message);
            append_summary(&mut log, settings::summary_file(env).as_ref(), &summary::input_error_markdown(&message))?;
            return Err(failure);
        }
    };
    log.debug(&format!("resolved settings: {s:?}"));
    crate::commands::block_on(async {
        // Handlers first: as PID 1 of its container, the step gets no SIGINT
        // or SIGTERM (a cancelled job) without them.
        let cancel = Cancel::on_signals();
        run_step(&s, log, &cancel).await
    })
}

/// What reporting may still take once the step is cancelled: the runner
/// escalates at 7.5 s, and the process must be gone well before (together
/// these stay under the watchdog's [`crate::cancel::EXIT_DEADLINE`]).
const START_GRACE_AFTER_CANCEL: Duration = Duration::from_millis(1500);
const REPORT_AFTER_CANCEL: Duration = Duration::from_millis(2500);

async fn run_step(s: &ActionSettings, mut log: Log<Stdout>, cancel: &Cancel) -> Result<(), Failure> {
    let debug = s.debug;
    // The client's lines go through a Log of their own: the same escaping, on the same stdout.
    let notify: Notify = Arc::new(move |debug_only, line| {
        let mut log = Log::new(std::io::stdout(), debug);
        if debug_only {
            log.debug(line);
        } else {
            log.info(line);
        }
    });
    let gh = &s.github;
    let client = match OctocrabGitHub::new(&gh.api_url, gh.token.as_ref(), &gh.owner, &gh.repo, notify.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            log.warning("release-capsule: GitHub API", &format!("{e}; nothing is reported to GitHub"));
            None
        }
    };
    let api: Option<&dyn ChecksApi> = if gh.token.is_some() { client.as_ref().map(|c| c as &dyn ChecksApi) } else { None };
    let sha = s.sha();
    let mut reporter = Reporter::new(api, gh, sha);

    log.info(&format!(
        "release-capsule {}: {} event, commit {sha}, {}",
        crate::core::TOOL_VERSION,
        s.event.name(),
        if s.push() { "pushing" } else { "dry run: nothing is pushed" }
    ));
    if s.fork {
        log.info("pull request from a fork: its token is read-only, so the check run and status will likely be refused");
    }
    // A cancellation while the check run is being created gives that request
    // a moment to finish: abandoning it could leave a run GitHub made, whose
    // id we never learnt, in progress forever.
    {
        let started = crate::clock::now_rfc3339();
        let start = reporter.start(&started);
        tokio::pin!(start);
        tokio::select! {
            () = &mut start => {}
            () = cancel.cancelled() => {
                let _ = tokio::time::timeout(START_GRACE_AFTER_CANCEL, &mut start).await;
            }
        }
    }
    if let Some(id) = reporter.check_run_id() {
        log.debug(&format!("check run {id} created for {sha}"));
    }

    log.group(&format!("Publish {} for git-{}", s.publish.capsule.capsule, sha.short()));
    let dates = GitHubCommitDates { api: client.as_ref(), from_payload: s.payload_commit_date.map(|d| (sha.clone(), d)) };
    let result = publish(&s.publish, Some(&dates as &dyn CommitDateSource), cancel).await;
    log.end_group();

    let outcome = result.as_ref();
    let problems = problems::problems(s, outcome);
    for p in &problems {
        log.annotate(&p.log_annotation());
    }
    match outcome {
        Ok(o) => log.info(&format!("{}: {}", outcome_word(o), if o.image_missing { &o.message } else { &o.report.reference })),
        Err(f) if f.kind == FailureKind::Cancelled => log.error("release-capsule: cancelled", &f.to_string()),
        Err(f) => log.error("release-capsule: publish failed", &f.to_string()),
    }

    let records = gitops::record_after_publish(s, &result, &mut log, cancel, notify.clone()).await;
    let records_view = records.as_ref().map(Result::as_ref);
    let preview = preview::preview_after_publish(s, &result, &mut log, cancel, notify.clone()).await;

    let mut step_failure = None;
    if let Some(path) = &s.output_file {
        let all = [verdict::outputs(outcome, records_view), preview::outputs(s, &preview)].concat();
        if let Err(e) = outputs::append(path, &all) {
            step_failure = Some(Failure::failed(e));
        }
    } else {
        log.debug("GITHUB_OUTPUT is not set: no step outputs");
    }

    let publish_markdown = summary::markdown(s, outcome, &problems) + &summary::records_markdown(records_view, &s.gitops_notes);
    let (mut markdown, text, mut job_markdown) = summary::with_preview(publish_markdown, &preview, &preview::shown_path(s));
    reporter.set_text(text);
    let annotations: Vec<_> =
        problems.iter().chain(preview::problem(s, &preview).as_ref()).map(problems::Problem::check_annotation).collect();
    let verdict_now = || verdict::with_preview(verdict::verdict(s, outcome, records_view), &preview);
    if cancel.is_cancelled() {
        // Cancelled before or during publish: conclude at once, within the deadline.
        finish_within_deadline(&mut reporter, &verdict_now(), &markdown, &annotations).await;
    } else {
        let verdict = verdict_now();
        let finished = cancel.guard("reporting", async {
            reporter.finish(&verdict, &markdown, &annotations, &crate::clock::now_rfc3339()).await;
            Ok(())
        });
        if let Err(stopped) = finished.await {
            // Cancelled while reporting: whatever was in flight is abandoned,
            // and the check run is concluded `cancelled` all the same.
            let why = match outcome {
                Ok(o) => format!("{}; the capsule itself was {}", verdict::headline(&stopped), outcome_word(o)),
                Err(_) => verdict::headline(&stopped),
            };
            log.error("release-capsule: cancelled", &why);
            let warning = format!("\n> [!WARNING]\n> {why}\n");
            markdown.push_str(&warning);
            job_markdown.push_str(&warning);
            finish_within_deadline(&mut reporter, &verdict::cancelled(s, &why), &markdown, &[]).await;
            step_failure.get_or_insert(stopped);
        }
    }
    for note in reporter.notes() {
        log.warning("release-capsule: reporting", note);
    }
    let summary_text = job_markdown + &summary::notes_markdown(reporter.notes());
    if let Err(f) = append_summary(&mut log, s.summary_file.as_ref(), &summary_text) {
        step_failure.get_or_insert(f);
    }

    result?;
    if let Some(Err(f)) = records {
        return Err(f);
    }
    if let preview::PreviewStep::Failed(f) = preview {
        return Err(f);
    }
    step_failure.map_or(Ok(()), Err)
}

/// "published", "already published", …: what a publish outcome amounts to.
fn outcome_word(o: &PublishOutcome) -> &'static str {
    if o.image_missing {
        "not built (no image)"
    } else if o.dry_run {
        "validated, not pushed"
    } else if o.published {
        "published"
    } else {
        "already published"
    }
}

/// Concludes the check run and sets the status, giving up on whatever is
/// left after [`REPORT_AFTER_CANCEL`].
async fn finish_within_deadline(reporter: &mut Reporter<'_>, verdict: &Verdict, markdown: &str, annotations: &[CheckAnnotation]) {
    let now = crate::clock::now_rfc3339();
    if tokio::time::timeout(REPORT_AFTER_CANCEL, reporter.finish(verdict, markdown, annotations, &now)).await.is_err() {
        eprintln!("warning: GitHub did not answer in time; the check run may not show the cancellation");
    }
}
