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
/// The directory is the workspace's, which the pull request checked out: a
/// symlink there (the directory, or a `.diff` file in it) is not followed, so
/// that the preview writes nothing outside it.
pub fn write(report: &PreviewReport, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Failure::input(anyhow!(
            "{}: is a symlink; the preview writes its diffs into a directory of the workspace, not through a link (remove it from the repository)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io_failure(dir, "be created"))?;
    for entry in std::fs::read_dir(dir).map_err(io_failure(dir, "be listed"))? {
        let entry = entry.map_err(io_failure(dir, "be listed"))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_failure(&path, "be read"))?;
        if path.extension().is_some_and(|e| e == "diff") && (kind.is_file() || kind.is_symlink()) {
            std::fs::remove_file(&path).map_err(io_failure(&path, "be removed"))?;
        }
    }
    let mut written = Vec::new();
    for env in &report.environments {
        let path = dir.join(format!("{}.diff", env.name));
        if !path.starts_with(dir) {
            return Err(Failure::failed(anyhow!("{}: outside {}", path.display(), dir.display())));
        }
        // create_new: never through a link left there since.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_failure(&path, "be created"))?;
        std::io::Write::write_all(&mut file, environment_text(report, env).as_bytes()).map_err(io_failure(&path, "be written"))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::baseline::Found;
    use crate::preview::secrets::Scrubber;

    fn report() -> PreviewReport {
        PreviewReport {
            environments: vec![EnvironmentResult { name: "staging".into(), ..EnvironmentResult::default() }],
            baseline: Found::Nothing { merge_base: "0123456789012345678901234567890123456789".parse().unwrap(), looked_at: 1 },
            image_ref: "ghcr.io/a/b:git-0123456789012345678901234567890123456789".into(),
            scrubber: Scrubber::default(),
            files: Vec::new(),
        }
    }

    #[test]
    fn links_in_the_workspace_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let (workspace, elsewhere) = (root.path().join("workspace"), root.path().join("elsewhere"));
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep.diff"), "theirs").unwrap();
        // The directory a link: refused, and nothing there removed or written.
        let linked = workspace.join("release-capsule-preview");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        let err = write(&report(), &linked).unwrap_err().to_string();
        assert!(err.ends_with("is a symlink; the preview writes its diffs into a directory of the workspace, not through a link (remove it from the repository)"), "{err}");
        assert_eq!(std::fs::read_to_string(elsewhere.join("keep.diff")).unwrap(), "theirs");
        assert!(!elsewhere.join("staging.diff").exists());
        // A `.diff` link inside, dangling: removed, not written through.
        std::fs::remove_file(&linked).unwrap();
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("planted"), linked.join("staging.diff")).unwrap();
        let files = write(&report(), &linked).unwrap();
        assert_eq!(files, [linked.join("staging.diff")]);
        assert!(!elsewhere.join("planted").exists());
        assert!(std::fs::read_to_string(linked.join("staging.diff")).unwrap().starts_with("# Preview of environment staging"));
    }
}
