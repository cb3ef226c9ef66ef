//! What the step concludes, in the shapes GitHub takes it: the check run's
//! title and conclusion, the commit status, and the step outputs. Pure
//! functions of the publish result.

use crate::commands::publish::PublishOutcome;
use crate::failure::{Failure, FailureKind};
use crate::github::{truncate_chars, Conclusion, StatusState, MAX_STATUS_DESCRIPTION};
use crate::gitops::Written;

use super::preview::PreviewStep;
use super::settings::ActionSettings;

/// The publish result as the step reports it.
pub type Outcome<'a> = Result<&'a PublishOutcome, &'a Failure>;

/// The GitOps records, when the run wrote (or tried to write) any.
pub type Records<'a> = Option<Result<&'a Written, &'a Failure>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub conclusion: Conclusion,
    pub state: StatusState,
    /// The check run's title.
    pub title: String,
    /// The commit status description, at most 140 characters.
    pub description: String,
}

/// The first line of an error chain, for titles and descriptions.
pub fn headline(f: &Failure) -> String {
    let text = format!("{:#}", f.error);
    text.lines().next().unwrap_or_default().to_owned()
}

fn short_tag(s: &ActionSettings) -> String {
    format!("git-{}", s.sha().short())
}

fn make(conclusion: Conclusion, state: StatusState, title: String, description: String) -> Verdict {
    Verdict { conclusion, state, title: truncate_chars(&title, 120), description: truncate_chars(&description, MAX_STATUS_DESCRIPTION) }
}

/// The verdict on publishing, then on the GitOps records: a release that was
/// published but not recorded fails the run, since the promotion that reads
/// the records will not see it.
pub fn verdict(s: &ActionSettings, outcome: Outcome, records: Records) -> Verdict {
    let published = publish_verdict(s, outcome);
    let tag = short_tag(s);
    match records {
        None => published,
        Some(Err(f)) if f.kind == FailureKind::Cancelled => cancelled(s, &headline(f)),
        Some(Err(f)) => {
            let why = headline(f);
            make(
                Conclusion::Failure,
                StatusState::Failure,
                format!("{tag} in the registry; GitOps records failed: {why}"),
                format!("{tag} in the registry; GitOps records failed: {why}"),
            )
        }
        Some(Ok(w)) => {
            let recorded = match &w.commit {
                Some(c) => format!("recorded in {} ({})", w.repository, c.get(..7).unwrap_or(c)),
                None => format!("already recorded in {}", w.repository),
            };
            make(published.conclusion, published.state, format!("{}; {recorded}", published.title), published.description)
        }
    }
}

fn publish_verdict(s: &ActionSettings, outcome: Outcome) -> Verdict {
    let tag = short_tag(s);
    match outcome {
        Ok(o) if o.image_missing => make(
            Conclusion::Neutral,
            StatusState::Success,
            format!("Package validated; no capsule for {tag} without its image"),
            format!("{tag} package validated; image not in the registry, so no capsule digest"),
        ),
        Ok(o) => {
            let short = o.report.digest.get(..19).unwrap_or(&o.report.digest);
            if o.dry_run {
                make(
                    Conclusion::Neutral,
                    StatusState::Success,
                    format!("Validated {tag}, nothing pushed (dry run)"),
                    format!("{short}… {tag} validated, not pushed (dry run)"),
                )
            } else if o.published {
                make(Conclusion::Success, StatusState::Success, format!("Published {tag} ({short})"), format!("{short}… {tag} published"))
            } else {
                make(
                    Conclusion::Success,
                    StatusState::Success,
                    format!("Already published {tag} ({short})"),
                    format!("{short}… {tag} already published"),
                )
            }
        }
        Err(f) if f.kind == FailureKind::Cancelled => cancelled(s, &headline(f)),
        Err(f) => {
            let why = headline(f);
            make(Conclusion::Failure, StatusState::Failure, format!("Failed: {why}"), format!("{tag} failed: {why}"))
        }
    }
}

/// A cancelled run: the check run concludes `cancelled`, the status is
/// `error` (a commit status has no "cancelled"; `error` is not a verdict on
/// the commit).
pub fn cancelled(s: &ActionSettings, why: &str) -> Verdict {
    let tag = short_tag(s);
    make(Conclusion::Cancelled, StatusState::Error, format!("Cancelled: {why}"), format!("{tag} cancelled: {why}"))
}

/// The verdict with the preview's: a preview that failed fails the check
/// (a template that does not render, a base that does not verify); one that
/// ran says so in the title.
pub fn with_preview(v: Verdict, preview: &PreviewStep) -> Verdict {
    match preview {
        PreviewStep::Off => v,
        PreviewStep::Skipped(_) => make(v.conclusion, v.state, format!("{}; preview skipped", v.title), v.description),
        PreviewStep::Done(r) => {
            let said = match r.changing() {
                0 => "preview: no changes".to_owned(),
                n => format!("preview: {n} of {} environments change", r.environments.len()),
            };
            make(v.conclusion, v.state, format!("{}; {said}", v.title), v.description)
        }
        PreviewStep::Failed(f) if f.kind == FailureKind::Cancelled => v,
        PreviewStep::Failed(f) => {
            let why = headline(f);
            make(Conclusion::Failure, StatusState::Failure, format!("Preview failed: {why}"), format!("preview failed: {why}"))
        }
    }
}

/// The step outputs, in action.yml's order.
pub fn outputs(outcome: Outcome, records: Records) -> Vec<(&'static str, String)> {
    let mut out = publish_outputs(outcome);
    if let Some(Ok(w)) = records {
        out.push(("gitops-commit", w.commit.clone().unwrap_or_default()));
    }
    out
}

fn publish_outputs(outcome: Outcome) -> Vec<(&'static str, String)> {
    match outcome {
        Ok(o) if o.image_missing => {
            vec![("tag", o.report.tag.clone()), ("package-digest", o.report.package_digest.clone()), ("published", "false".to_owned())]
        }
        Ok(o) => {
            let r = &o.report;
            vec![
                ("digest", r.digest.clone()),
                ("ref", r.reference.clone()),
                ("tag", r.tag.clone()),
                ("image-digest", r.image_digest.clone()),
                ("package-digest", r.package_digest.clone()),
                ("created", r.created.clone()),
                ("published", o.published.to_string()),
            ]
        }
        Err(_) => vec![("published", "false".to_owned())],
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::action::settings::resolve;
    use crate::core::package::Diagnostic;
    use crate::report::CapsuleReport;

    pub const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    pub fn settings() -> ActionSettings {
        let env = |k: &str| {
            Some(
                match k {
                    "GITHUB_EVENT_NAME" => "push",
                    "GITHUB_SHA" => SHA,
                    "GITHUB_REPOSITORY" => "acme/app",
                    "GITHUB_WORKSPACE" => "/w",
                    "INPUT_IMAGE" => "ghcr.io/acme/app",
                    "INPUT_PACKAGE-PATH" => "deploy/chart",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        resolve(&env, None).unwrap()
    }

    pub fn outcome(published: bool, dry_run: bool) -> PublishOutcome {
        let digest = format!("sha256:{}", "1a2b3c4d5e6f".repeat(6).get(..64).unwrap());
        PublishOutcome {
            report: CapsuleReport {
                digest: digest.clone(),
                reference: format!("ghcr.io/acme/app-release-capsule@{digest}"),
                tag: format!("git-{SHA}"),
                capsule_repository: "ghcr.io/acme/app-release-capsule".into(),
                image: "ghcr.io/acme/app".into(),
                image_digest: format!("sha256:{}", "a".repeat(64)),
                package_kind: "helm".into(),
                package_digest: format!("sha256:{}", "b".repeat(64)),
                package_name: Some("hello".into()),
                package_version: Some("0.1.0".into()),
                file_count: 12,
                package_size: 4096,
                layer_digest: format!("sha256:{}", "c".repeat(64)),
                layer_size: 2000,
                chart_layer_digest: None,
                chart_layer_size: None,
                created: "2026-11-20T10:11:12Z".into(),
            },
            published,
            image_pushed: false,
            dry_run,
            image_missing: false,
            warnings: vec![Diagnostic { file: "Chart.yaml".into(), line: None, message: "Chart.yaml has no appVersion".into() }],
            message: String::new(),
            http_requests: 0,
            signature: None,
        }
    }

    #[test]
    fn verdicts_and_descriptions() {
        let s = settings();
        let v = verdict(&s, Ok(&outcome(true, false)), None);
        assert_eq!((v.conclusion, v.state), (Conclusion::Success, StatusState::Success));
        assert_eq!(v.description, "sha256:1a2b3c4d5e6f… git-ec26c3e published");
        let v = verdict(&s, Ok(&outcome(false, false)), None);
        assert_eq!(v.description, "sha256:1a2b3c4d5e6f… git-ec26c3e already published");
        let v = verdict(&s, Ok(&outcome(false, true)), None);
        assert_eq!(v.conclusion, Conclusion::Neutral);
        let long = Failure::input(anyhow::anyhow!("{}", "x".repeat(500)));
        let v = verdict(&s, Err(&long), None);
        assert_eq!((v.conclusion, v.state), (Conclusion::Failure, StatusState::Failure));
        assert_eq!(v.description.chars().count(), 140);
        assert!(v.description.starts_with("git-ec26c3e failed: xxx") && v.description.ends_with('…'));
        for v in [verdict(&s, Ok(&outcome(true, false)), None), verdict(&s, Ok(&outcome(false, true)), None), verdict(&s, Err(&long), None)]
        {
            assert!(v.description.chars().count() <= MAX_STATUS_DESCRIPTION, "{}", v.description);
        }
    }

    #[test]
    fn a_missing_image_is_neutral_and_a_cancellation_is_an_error_status() {
        let s = settings();
        let mut o = outcome(false, true);
        o.image_missing = true;
        let v = verdict(&s, Ok(&o), None);
        assert_eq!((v.conclusion, v.state), (Conclusion::Neutral, StatusState::Success));
        assert!(v.title.contains("without its image"), "{}", v.title);
        let names: Vec<&str> = outputs(Ok(&o), None).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tag", "package-digest", "published"]);
        let f = Failure::cancelled(anyhow::anyhow!("cancelled by SIGINT while uploading the image's blobs"));
        let v = verdict(&s, Err(&f), None);
        assert_eq!((v.conclusion, v.state), (Conclusion::Cancelled, StatusState::Error));
        assert_eq!(v.description, "git-ec26c3e cancelled: cancelled by SIGINT while uploading the image's blobs");
    }

    #[test]
    fn outputs_for_success_and_failure() {
        let o = outcome(true, false);
        let out = outputs(Ok(&o), None);
        let names: Vec<&str> = out.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["digest", "ref", "tag", "image-digest", "package-digest", "created", "published"]);
        assert_eq!(out[6].1, "true");
        let f = Failure::input(anyhow::anyhow!("x"));
        assert_eq!(outputs(Err(&f), None), vec![("published", "false".to_owned())]);
    }

    #[test]
    fn records_extend_the_verdict_and_their_failure_fails_the_run() {
        let s = settings();
        let o = outcome(true, false);
        let w = Written {
            repository: "acme/gitops".into(),
            branch: "main".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Written::default()
        };
        let v = verdict(&s, Ok(&o), Some(Ok(&w)));
        assert_eq!(v.conclusion, Conclusion::Success);
        assert!(v.title.ends_with("; recorded in acme/gitops (0123456)"), "{}", v.title);
        assert_eq!(outputs(Ok(&o), Some(Ok(&w))).last().unwrap(), &("gitops-commit", w.commit.clone().unwrap()));
        let f = Failure::input(anyhow::anyhow!("acme/gitops: the token may not create blob (403: Resource not accessible)"));
        let v = verdict(&s, Ok(&o), Some(Err(&f)));
        assert_eq!((v.conclusion, v.state), (Conclusion::Failure, StatusState::Failure));
        assert!(v.description.starts_with("git-ec26c3e in the registry; GitOps records failed: acme/gitops"), "{}", v.description);
    }
}
