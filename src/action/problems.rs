//! Problems found in the package, as the step shows them: workflow-command
//! annotations in the log and annotations on the check run, each pointing at
//! a file relative to the repository root.

use crate::core::package::{Diagnostic, PackageError};
use crate::failure::Failure;
use crate::github::{AnnotationLevel, CheckAnnotation};

use super::settings::ActionSettings;
use super::verdict::Outcome;
use super::workflow_commands::{Level, LogAnnotation};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::verdict::tests::{outcome, settings};

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
}
