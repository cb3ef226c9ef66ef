//! The complete preview, one file per environment (`<name>.diff`) under
//! `preview-path`, for `actions/upload-artifact`: every diff in full, where
//! the check run has room for only part of them. Secret values are masked
//! here as everywhere.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::compare::Comparison;
use super::report::{baseline_line, image_line};
use super::{io_failure, EnvironmentResult, PreviewReport};
use crate::failure::Failure;

fn comparison(out: &mut String, title: &str, c: &Comparison, image_ref: &str) {
    let _ = writeln!(out, "# {title}");
    if c.is_empty() {
        let _ = writeln!(out, "# no changes\n");
        return;
    }
    if let Some(line) = image_line(c, image_ref) {
        let _ = writeln!(out, "# {line}");
        for key in &c.image_only {
            let _ = writeln!(out, "#   {key}");
        }
    }
    out.push('\n');
    for change in &c.changes {
        let _ = writeln!(out, "# {} {}", change.kind.word(), change.key);
        out.push_str(&change.diff);
        if !change.diff.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
}

/// One environment's file.
pub fn environment_text(report: &PreviewReport, env: &EnvironmentResult) -> String {
    let mut out = format!("# Preview of environment {}\n# rendered with image {}\n", env.name, report.image_ref);
    let _ = writeln!(out, "# {}\n", baseline_line(&report.baseline).replace('`', ""));
    match &env.this_change {
        Some(c) => comparison(&mut out, "This change: the pull request against the base capsule", c, &report.image_ref),
        None => out.push_str("# This change: no base capsule to compare against\n\n"),
    }
    match (&env.against_now, &env.rendered) {
        (Some(c), Some((branch, path))) => {
            comparison(&mut out, &format!("Against what runs now: {path} on {branch}"), c, &report.image_ref);
        }
        _ => out.push_str("# Against what runs now: not compared (no rendered branch configured, or nothing there yet)\n\n"),
    }
    for note in &env.notes {
        let _ = writeln!(out, "# note: {note}");
    }
    report.scrubber.scrub(&out)
}

/// Writes every environment's file into `dir` (created; earlier `.diff`
/// files in it removed, so that a renamed environment leaves none behind).
pub fn write(report: &PreviewReport, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(dir).map_err(io_failure(dir, "be created"))?;
    for entry in std::fs::read_dir(dir).map_err(io_failure(dir, "be listed"))? {
        let path = entry.map_err(io_failure(dir, "be listed"))?.path();
        if path.extension().is_some_and(|e| e == "diff") && path.is_file() {
            std::fs::remove_file(&path).map_err(io_failure(&path, "be removed"))?;
        }
    }
    let mut written = Vec::new();
    for env in &report.environments {
        let path = dir.join(format!("{}.diff", env.name));
        if !path.starts_with(dir) {
            return Err(Failure::failed(anyhow!("{}: outside {}", path.display(), dir.display())));
        }
        std::fs::write(&path, environment_text(report, env)).map_err(io_failure(&path, "be written"))?;
        written.push(path);
    }
    Ok(written)
}
