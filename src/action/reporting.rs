//! The result on the commit: one check run per step run (created
//! `in_progress` at the start, completed at the end) and a commit status.
//! Reporting never fails the step: a read-only token (a fork's pull request)
//! or an API failure becomes a note for the log and the job summary.

use crate::core::ident::GitSha;
use crate::github::{
    truncate_chars, CheckAnnotation, CheckOutput, CheckRunCreate, CheckRunUpdate, ChecksApi, CommitStatus, GitHubError, StatusState,
    MAX_ANNOTATIONS_PER_REQUEST, MAX_OUTPUT_TEXT,
};

use super::settings::GitHubSettings;
use super::verdict::Verdict;

pub struct Reporter<'a> {
    api: Option<&'a dyn ChecksApi>,
    gh: &'a GitHubSettings,
    sha: &'a GitSha,
    check_run: Option<u64>,
    /// Set once a channel has failed for good; nothing more is sent on it.
    check_off: bool,
    status_off: bool,
    notes: Vec<String>,
    /// The check run's `output.text`: what did not fit in its summary.
    text: Option<String>,
}

impl<'a> Reporter<'a> {
    /// `api` is `None` when there is nothing to report with (no token).
    pub fn new(api: Option<&'a dyn ChecksApi>, gh: &'a GitHubSettings, sha: &'a GitSha) -> Self {
        let mut r = Self {
            api,
            gh,
            sha,
            check_run: None,
            check_off: !gh.report.check,
            status_off: !gh.report.status,
            notes: Vec::new(),
            text: None,
        };
        if api.is_none() && (gh.report.check || gh.report.status) {
            r.notes.push("no github-token: the result is not reported as a check run or commit status".into());
            r.check_off = true;
            r.status_off = true;
        }
        r
    }

    /// Warnings about reporting itself, for the log and the job summary.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Sets the check run's `output.text` (cut to GitHub's limit).
    pub fn set_text(&mut self, text: Option<String>) {
        self.text = text.map(|t| truncate_chars(&t, MAX_OUTPUT_TEXT));
    }

    pub fn check_run_id(&self) -> Option<u64> {
        self.check_run
    }

    fn note(&mut self, what: &str, e: &GitHubError) {
        let hint = if e.is_forbidden() { "; the capsule itself is unaffected" } else { "" };
        self.notes.push(format!("{what} was not reported: {e}{hint}"));
    }

    fn status(&self, state: StatusState, description: String) -> CommitStatus {
        CommitStatus { state, target_url: self.gh.run_url.clone(), description, context: self.gh.status_context.clone() }
    }

    /// The check run `in_progress` and a `pending` status.
    pub async fn start(&mut self, now: &str) {
        let Some(api) = self.api else { return };
        if !self.check_off {
            let run = CheckRunCreate {
                name: self.gh.check_name.clone(),
                head_sha: self.sha.to_string(),
                status: "in_progress",
                started_at: now.to_owned(),
                details_url: self.gh.run_url.clone(),
                external_id: None,
                output: CheckOutput {
                    title: format!("Building release capsule git-{}", self.sha.short()),
                    summary: "The release capsule is being built and published.".into(),
                    text: None,
                    annotations: Vec::new(),
                },
            };
            match api.create_check_run(&run).await {
                Ok(id) => self.check_run = Some(id),
                Err(e) => {
                    // Whatever went wrong, no second check run is created later.
                    self.check_off = true;
                    self.note("the check run", &e);
                }
            }
        }
        if !self.status_off {
            let pending = self.status(StatusState::Pending, format!("building git-{}", self.sha.short()));
            if let Err(e) = api.create_commit_status(self.sha, &pending).await {
                self.status_off = true;
                self.note("the commit status", &e);
            }
        }
    }

    /// Completes the check run (annotations first, at most 50 per request,
    /// then the conclusion) and sets the final status.
    pub async fn finish(&mut self, verdict: &Verdict, summary: &str, annotations: &[CheckAnnotation], now: &str) {
        let Some(api) = self.api else { return };
        if let (Some(id), false) = (self.check_run, self.check_off) {
            let summary = truncate_chars(summary, MAX_OUTPUT_TEXT);
            let text = self.text.clone();
            let output = |annotations: Vec<CheckAnnotation>| CheckOutput {
                title: verdict.title.clone(),
                summary: summary.clone(),
                text: text.clone(),
                annotations,
            };
            // Annotations go first, while the run is in progress: those updates
            // cannot be re-sent (annotations accumulate), and the completing
            // update, which carries none, then can be, so the run never stays
            // in progress because of a dropped connection.
            for batch in annotations.chunks(MAX_ANNOTATIONS_PER_REQUEST) {
                let update = CheckRunUpdate { status: None, conclusion: None, completed_at: None, output: output(batch.to_vec()) };
                if let Err(e) = api.update_check_run(id, &update).await {
                    self.note("annotations on the check run", &e);
                    if e.is_forbidden() {
                        self.check_off = true;
                    }
                    break;
                }
            }
            if !self.check_off {
                let done = CheckRunUpdate {
                    status: Some("completed"),
                    conclusion: Some(verdict.conclusion),
                    completed_at: Some(now.to_owned()),
                    output: output(Vec::new()),
                };
                if let Err(e) = api.update_check_run(id, &done).await {
                    self.note("the check run's conclusion", &e);
                }
            }
        }
        if !self.status_off {
            let status = self.status(verdict.state, verdict.description.clone());
            if let Err(e) = api.create_commit_status(self.sha, &status).await {
                self.note("the commit status", &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;
    use futures_util::FutureExt;

    use super::*;
    use crate::action::settings::ReportTo;
    use crate::github::{AnnotationLevel, Conclusion};

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Create(CheckRunCreate),
        Update(u64, CheckRunUpdate),
        Status(String, CommitStatus),
    }

    /// Records calls; answers 403 "Resource not accessible by integration" when `forbidden`.
    #[derive(Default)]
    struct FakeApi {
        calls: Mutex<Vec<Call>>,
        forbidden: bool,
    }

    impl FakeApi {
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        fn answer(&self, operation: &'static str) -> Result<(), GitHubError> {
            if self.forbidden {
                return Err(GitHubError::Forbidden {
                    operation,
                    status: 403,
                    message: "Resource not accessible by integration".into(),
                    permission: "checks",
                });
            }
            Ok(())
        }
    }

    impl ChecksApi for FakeApi {
        fn create_check_run<'a>(&'a self, run: &'a CheckRunCreate) -> BoxFuture<'a, Result<u64, GitHubError>> {
            self.calls.lock().unwrap().push(Call::Create(run.clone()));
            let r = self.answer("create check run").map(|()| 30_000_000_001);
            async move { r }.boxed()
        }
        fn update_check_run<'a>(&'a self, id: u64, update: &'a CheckRunUpdate) -> BoxFuture<'a, Result<(), GitHubError>> {
            self.calls.lock().unwrap().push(Call::Update(id, update.clone()));
            let r = self.answer("update check run");
            async move { r }.boxed()
        }
        fn create_commit_status<'a>(&'a self, sha: &'a GitSha, status: &'a CommitStatus) -> BoxFuture<'a, Result<(), GitHubError>> {
            self.calls.lock().unwrap().push(Call::Status(sha.to_string(), status.clone()));
            let r = self.answer("create commit status");
            async move { r }.boxed()
        }
    }

    fn gh(report: ReportTo) -> GitHubSettings {
        GitHubSettings {
            api_url: "http://127.0.0.1:1".into(),
            owner: "acme".into(),
            repo: "app".into(),
            token: None,
            run_url: Some("https://github.com/acme/app/actions/runs/1".into()),
            check_name: "release-capsule".into(),
            status_context: "ci/capsule".into(),
            report,
        }
    }

    fn sha() -> GitSha {
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821".parse().unwrap()
    }

    fn verdict() -> Verdict {
        Verdict { conclusion: Conclusion::Success, state: StatusState::Success, title: "Published".into(), description: "d".into() }
    }

    fn annotations(n: usize) -> Vec<CheckAnnotation> {
        (1..=n)
            .map(|i| CheckAnnotation {
                path: format!("charts/app/templates/t{i}.yaml"),
                start_line: 1,
                end_line: 1,
                annotation_level: AnnotationLevel::Warning,
                message: format!("warning {i}"),
                title: None,
            })
            .collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn one_check_run_annotations_in_batches_of_fifty_then_completion() {
        let api = FakeApi::default();
        let settings = gh(ReportTo { check: true, status: true });
        let sha = sha();
        let mut r = Reporter::new(Some(&api), &settings, &sha);
        block_on(async {
            r.start("2026-01-01T00:00:00Z").await;
            r.finish(&verdict(), "summary", &annotations(120), "2026-01-01T00:01:00Z").await;
        });
        let calls = api.calls();
        let creates = calls.iter().filter(|c| matches!(c, Call::Create(_))).count();
        assert_eq!(creates, 1);
        let Call::Create(create) = &calls[0] else { panic!("{calls:?}") };
        assert_eq!((create.head_sha.as_str(), create.status), (sha.as_str(), "in_progress"));
        let Call::Status(_, pending) = &calls[1] else { panic!() };
        assert_eq!(pending.state, StatusState::Pending);
        let updates: Vec<&CheckRunUpdate> = calls.iter().filter_map(|c| if let Call::Update(_, u) = c { Some(u) } else { None }).collect();
        let sizes: Vec<usize> = updates.iter().map(|u| u.output.annotations.len()).collect();
        assert_eq!(sizes, [50, 50, 20, 0]);
        assert!(updates[..3].iter().all(|u| u.conclusion.is_none() && !u.is_replayable()));
        let last = updates[3];
        assert_eq!((last.status, last.conclusion), (Some("completed"), Some(Conclusion::Success)));
        assert!(last.is_replayable());
        let Some(Call::Status(s, done)) = calls.last() else { panic!() };
        assert_eq!(s, sha.as_str());
        assert_eq!((done.state, done.context.as_str()), (StatusState::Success, "ci/capsule"));
        assert_eq!(done.target_url.as_deref(), Some("https://github.com/acme/app/actions/runs/1"));
        assert!(r.notes().is_empty());
    }

    #[test]
    fn read_only_token_becomes_notes_and_stops_trying() {
        let api = FakeApi { forbidden: true, ..Default::default() };
        let settings = gh(ReportTo { check: true, status: true });
        let sha = sha();
        let mut r = Reporter::new(Some(&api), &settings, &sha);
        block_on(async {
            r.start("2026-01-01T00:00:00Z").await;
            r.finish(&verdict(), "summary", &annotations(3), "2026-01-01T00:01:00Z").await;
        });
        // One try per channel, then silence.
        assert_eq!(api.calls().len(), 2);
        assert_eq!(r.notes().len(), 2);
        assert!(r.notes()[0].contains("Resource not accessible by integration"), "{:?}", r.notes());
    }

    #[test]
    fn report_input_selects_channels() {
        let api = FakeApi::default();
        let sha = sha();
        for (report, expect) in [(ReportTo { check: true, status: false }, "check"), (ReportTo { check: false, status: true }, "status")] {
            let settings = gh(report);
            let mut r = Reporter::new(Some(&api), &settings, &sha);
            api.calls.lock().unwrap().clear();
            block_on(async {
                r.start("2026-01-01T00:00:00Z").await;
                r.finish(&verdict(), "s", &[], "2026-01-01T00:01:00Z").await;
            });
            let calls = api.calls();
            let statuses = calls.iter().filter(|c| matches!(c, Call::Status(..))).count();
            match expect {
                "check" => assert_eq!((calls.len(), statuses), (2, 0)),
                _ => assert_eq!((calls.len(), statuses), (2, 2)),
            }
        }
        let settings = gh(ReportTo { check: true, status: true });
        let r = Reporter::new(None, &settings, &sha);
        assert_eq!(r.notes().len(), 1, "no token is a note, not an error");
    }
}
