//! What the step tells people: the Markdown job summary (also the check run's
//! summary), the check run's title and conclusion, the commit status, the
//! step outputs and the annotations. Pure functions of the publish result.

use crate::commands::publish::PublishOutcome;
use crate::core::package::{Diagnostic, PackageError};
use crate::failure::Failure;
use crate::github::{truncate_chars, AnnotationLevel, CheckAnnotation, Conclusion, StatusState, MAX_STATUS_DESCRIPTION};
use crate::report::human_size;

use super::settings::ActionSettings;
use super::workflow_commands::{Level, LogAnnotation};

/// The publish result as the step reports it.
pub type Outcome<'a> = Result<&'a PublishOutcome, &'a Failure>;

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
fn headline(f: &Failure) -> String {
    let text = format!("{:#}", f.error);
    text.lines().next().unwrap_or_default().to_owned()
}

pub fn verdict(s: &ActionSettings, outcome: Outcome) -> Verdict {
    let tag = format!("git-{}", s.sha().short());
    let (conclusion, state, title, description) = match outcome {
        Ok(o) => {
            let short = o.report.digest.get(..19).unwrap_or(&o.report.digest);
            if o.dry_run {
                (
                    Conclusion::Neutral,
                    StatusState::Success,
                    format!("Validated {tag}, nothing pushed (dry run)"),
                    format!("{short}… {tag} validated, not pushed (dry run)"),
                )
            } else if o.published {
                (Conclusion::Success, StatusState::Success, format!("Published {tag} ({short})"), format!("{short}… {tag} published"))
            } else {
                (
                    Conclusion::Success,
                    StatusState::Success,
                    format!("Already published {tag} ({short})"),
                    format!("{short}… {tag} already published"),
                )
            }
        }
        Err(f) => {
            let why = headline(f);
            (Conclusion::Failure, StatusState::Failure, truncate_chars(&format!("Failed: {why}"), 120), format!("{tag} failed: {why}"))
        }
    };
    Verdict { conclusion, state, title, description: truncate_chars(&description, MAX_STATUS_DESCRIPTION) }
}

/// The package problem behind a failure, if it is one.
pub fn package_error(f: &Failure) -> Option<&PackageError> {
    f.error.chain().find_map(|e| e.downcast_ref::<PackageError>())
}

/// A package diagnostic's file, relative to the repository root.
fn repo_file(s: &ActionSettings, d: &Diagnostic) -> String {
    match (s.package_repo_path.as_str(), d.file.as_str()) {
        (".", "") => ".".to_owned(),
        (".", file) => file.to_owned(),
        (dir, "") => dir.to_owned(),
        (dir, file) => format!("{dir}/{file}"),
    }
}

/// One problem found in the package: an error that stopped the run, or a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub error: bool,
    /// Relative to the repository root.
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

pub fn problems(s: &ActionSettings, outcome: Outcome) -> Vec<Problem> {
    let from = |error: bool, d: &Diagnostic| Problem { error, file: repo_file(s, d), line: d.line, message: d.message.clone() };
    match outcome {
        Ok(o) => o.warnings.iter().map(|d| from(false, d)).collect(),
        Err(f) => package_error(f).map(|e| vec![from(true, &e.diagnostic())]).unwrap_or_default(),
    }
}

impl Problem {
    pub fn title(&self) -> &'static str {
        if self.error {
            "release-capsule: package error"
        } else {
            "release-capsule: package warning"
        }
    }
    pub fn log_annotation(&self) -> LogAnnotation {
        LogAnnotation {
            level: if self.error { Level::Error } else { Level::Warning },
            file: Some(self.file.clone()),
            line: self.line,
            title: Some(self.title().to_owned()),
            message: self.message.clone(),
        }
    }
    pub fn check_annotation(&self) -> CheckAnnotation {
        let line = self.line.unwrap_or(1).max(1);
        CheckAnnotation {
            path: self.file.clone(),
            start_line: line,
            end_line: line,
            annotation_level: if self.error { AnnotationLevel::Failure } else { AnnotationLevel::Warning },
            message: self.message.clone(),
            title: Some(self.title().to_owned()),
        }
    }
}

/// The step outputs, in action.yml's order.
pub fn outputs(outcome: Outcome) -> Vec<(&'static str, String)> {
    match outcome {
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

/// `text` as inline code, with a fence longer than any backtick run inside.
fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A fenced block that `text` cannot close early.
fn block(lang: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end())
}

/// Table cells may not hold `|` or newlines.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The Kargo Warehouse and Stage snippets that consume this capsule.
fn kargo_hint(image: &str, capsule: &str) -> String {
    let warehouse = format!(
        "# Warehouse: subscribe to both repositories with allowTagsRegexes: ['^git-[0-9a-f]{{40}}$'], then pair them:\n\
         freightCreationCriteria:\n  expression: |\n    imageFrom('{image}').Tag == imageFrom('{capsule}').Tag"
    );
    let stage = format!(
        "# Stage: download exactly the capsule the Freight names, by digest:\n\
         - uses: oci-download\n  config:\n    imageRef: ${{{{ '{capsule}@' + imageFrom('{capsule}').Digest }}}}\n    outPath: ./release-capsule.tar.gz"
    );
    format!("<details><summary>Kargo</summary>\n\n{}\n{}\n</details>\n", block("yaml", &warehouse), block("yaml", &stage))
}

/// The job summary; the check run's summary is the same text. `problems`
/// are [`problems`] of the same outcome.
pub fn markdown(s: &ActionSettings, outcome: Outcome, problems: &[Problem]) -> String {
    let c = &s.publish.capsule;
    let tag = c.sha.tag();
    let mut md = String::new();
    match outcome {
        Ok(o) => {
            let r = &o.report;
            let what = if o.dry_run {
                "validated (dry run, nothing pushed)"
            } else if o.published {
                "published"
            } else {
                "already published"
            };
            md.push_str(&format!("### Release capsule {} {what}\n\n", code(&tag)));
            md.push_str("| | |\n| --- | --- |\n");
            md.push_str(&format!("| Capsule | {} |\n", code(&r.reference)));
            md.push_str(&format!("| Tag | {} |\n", code(&format!("{}:{}", r.capsule_repository, r.tag))));
            md.push_str(&format!("| Image | {} |\n", code(&format!("{}@{}", r.image, r.image_digest))));
            let package = match (&r.package_name, &r.package_version) {
                (Some(n), Some(v)) => format!("{} chart {} {}", r.package_kind, code(n), code(v)),
                _ => r.package_kind.clone(),
            };
            md.push_str(&format!(
                "| Package | {}, {} files, {}, {} |\n",
                cell(&package),
                r.file_count,
                human_size(r.package_size),
                code(&r.package_digest)
            ));
            md.push_str(&format!("| Source | {} at {} |\n", code(&format!("{}/{}", s.github.owner, s.github.repo)), code(c.sha.as_str())));
            md.push_str(&format!("| Created | {} |\n", code(&r.created)));
            let capsule_pushed = if o.dry_run {
                "not pushed (dry run)"
            } else if o.published {
                "pushed"
            } else {
                "not pushed (the tag already holds this release)"
            };
            let image_pushed = if o.image_pushed { "pushed from image-layout" } else { "not pushed (already in the registry)" };
            md.push_str(&format!("| Pushed | capsule {capsule_pushed}; image {image_pushed} |\n\n"));
            if !o.message.is_empty() {
                md.push_str(&format!("{}\n\n", cell(&o.message)));
            }
            md.push_str(&kargo_hint(&r.image, &r.capsule_repository));
        }
        Err(f) => {
            md.push_str(&format!("### Release capsule {} failed\n\n", code(&tag)));
            md.push_str(&block("text", &format!("{:#}", f.error)));
            md.push_str("\n| | |\n| --- | --- |\n");
            md.push_str(&format!("| Capsule | {} |\n", code(&c.capsule.with_tag(&tag))));
            md.push_str(&format!("| Image | {} |\n", code(&c.image.with_tag(&tag))));
            md.push_str(&format!("| Package | {} {} |\n", c.package_kind, code(&s.package_repo_path)));
            md.push_str("| Pushed | nothing |\n");
        }
    }
    if !problems.is_empty() {
        md.push_str("\n**Package problems**\n\n");
        for p in problems {
            let at = p.line.map_or_else(|| p.file.clone(), |l| format!("{}:{l}", p.file));
            md.push_str(&format!("- {} {}: {}\n", if p.error { "error" } else { "warning" }, code(&at), cell(&p.message)));
        }
    }
    md
}

/// Notes about reporting (a read-only token...), appended to the job summary.
pub fn notes_markdown(notes: &[String]) -> String {
    notes.iter().map(|n| format!("\n> [!WARNING]\n> {}\n", cell(n))).collect()
}

/// The summary for a run that stopped at its inputs.
pub fn input_error_markdown(message: &str) -> String {
    format!("### Release capsule: bad input\n\n{}", block("text", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::settings::resolve;
    use crate::report::CapsuleReport;

    const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn settings() -> ActionSettings {
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

    fn outcome(published: bool, dry_run: bool) -> PublishOutcome {
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
                created: "2026-11-20T10:11:12Z".into(),
            },
            published,
            image_pushed: false,
            dry_run,
            warnings: vec![Diagnostic { file: "Chart.yaml".into(), line: None, message: "Chart.yaml has no appVersion".into() }],
            message: String::new(),
            http_requests: 0,
        }
    }

    #[test]
    fn verdicts_and_descriptions() {
        let s = settings();
        let v = verdict(&s, Ok(&outcome(true, false)));
        assert_eq!((v.conclusion, v.state), (Conclusion::Success, StatusState::Success));
        assert_eq!(v.description, "sha256:1a2b3c4d5e6f… git-ec26c3e published");
        let v = verdict(&s, Ok(&outcome(false, false)));
        assert_eq!(v.description, "sha256:1a2b3c4d5e6f… git-ec26c3e already published");
        let v = verdict(&s, Ok(&outcome(false, true)));
        assert_eq!(v.conclusion, Conclusion::Neutral);
        let long = Failure::input(anyhow::anyhow!("{}", "x".repeat(500)));
        let v = verdict(&s, Err(&long));
        assert_eq!((v.conclusion, v.state), (Conclusion::Failure, StatusState::Failure));
        assert_eq!(v.description.chars().count(), 140);
        assert!(v.description.starts_with("git-ec26c3e failed: xxx") && v.description.ends_with('…'));
        for v in [verdict(&s, Ok(&outcome(true, false))), verdict(&s, Ok(&outcome(false, true))), verdict(&s, Err(&long))] {
            assert!(v.description.chars().count() <= MAX_STATUS_DESCRIPTION, "{}", v.description);
        }
    }

    #[test]
    fn annotations_point_into_the_repository() {
        let s = settings();
        let p = problems(&s, Ok(&outcome(true, false)));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].file, "deploy/chart/Chart.yaml");
        assert_eq!(
            p[0].log_annotation().to_command(),
            "::warning file=deploy/chart/Chart.yaml,title=release-capsule%3A package warning::Chart.yaml has no appVersion"
        );
        let failure = Failure::input(PackageError::ChartYaml { rel: "Chart.yaml".into(), line: Some(4), message: "bad version".into() });
        let p = problems(&s, Err(&failure));
        assert_eq!(
            p,
            vec![Problem {
                error: true,
                file: "deploy/chart/Chart.yaml".into(),
                line: Some(4),
                message: "Chart.yaml:4: bad version".into()
            }]
        );
        let a = p[0].check_annotation();
        assert_eq!((a.start_line, a.end_line, a.annotation_level), (4, 4, AnnotationLevel::Failure));
        // Errors reached through context still point at their file.
        let wrapped = Failure::input(anyhow::Error::new(PackageError::NoChartYaml).context("scanning deploy/chart"));
        assert_eq!(problems(&s, Err(&wrapped))[0].file, "deploy/chart/Chart.yaml");
        let root = Failure::input(PackageError::TotalTooLarge { size: 1 });
        assert_eq!(problems(&s, Err(&root))[0].file, "deploy/chart");
    }

    #[test]
    fn summary_holds_refs_package_and_kargo_hint() {
        let s = settings();
        let ok = outcome(true, false);
        let md = markdown(&s, Ok(&ok), &problems(&s, Ok(&ok)));
        for needle in [
            "### Release capsule `git-ec26c3e57ca3a959ca5aad62de7213c562f8c821` published",
            "| Capsule | `ghcr.io/acme/app-release-capsule@sha256:1a2b3c4d5e6f",
            "| Image | `ghcr.io/acme/app@sha256:aaaa",
            "| Package | helm chart `hello` `0.1.0`, 12 files, 4.0 KiB, `sha256:bbbb",
            "capsule pushed; image not pushed",
            "imageFrom('ghcr.io/acme/app').Tag == imageFrom('ghcr.io/acme/app-release-capsule').Tag",
            "imageRef: ${{ 'ghcr.io/acme/app-release-capsule@' + imageFrom('ghcr.io/acme/app-release-capsule').Digest }}",
            "- warning `deploy/chart/Chart.yaml`: Chart.yaml has no appVersion",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from\n{md}");
        }
        let f = Failure::input(anyhow::anyhow!("a ``` fence\nsecond line"));
        let md = markdown(&s, Err(&f), &problems(&s, Err(&f)));
        assert!(md.contains("````text\na ``` fence\nsecond line\n````"), "{md}");
        assert!(md.contains("| Pushed | nothing |"));
    }

    #[test]
    fn outputs_for_success_and_failure() {
        let o = outcome(true, false);
        let out = outputs(Ok(&o));
        let names: Vec<&str> = out.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["digest", "ref", "tag", "image-digest", "package-digest", "created", "published"]);
        assert_eq!(out[6].1, "true");
        let f = Failure::input(anyhow::anyhow!("x"));
        assert_eq!(outputs(Err(&f)), vec![("published", "false".to_owned())]);
    }

    #[test]
    fn inline_code_survives_backticks() {
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }
}
