//! The Markdown the step writes: the job summary, which is also the check
//! run's summary. A pure function of the publish result.

use crate::failure::FailureKind;
use crate::markdown::{block, cell, code};
use crate::report::human_size;

use super::preview::PreviewStep;
use super::problems::Problem;
use super::settings::ActionSettings;
use super::verdict::{Outcome, Records};

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
        Ok(o) if o.image_missing => {
            let r = &o.report;
            md.push_str(&format!("### Release capsule {}: package validated, no capsule\n\n", code(&tag)));
            md.push_str(&format!("{}\n\n", cell(&o.message)));
            md.push_str("| | |\n| --- | --- |\n");
            md.push_str(&format!("| Image | {} (not in the registry) |\n", code(&c.image.with_tag(&tag))));
            md.push_str(&format!(
                "| Package | {}, {} files, {}, {} |\n",
                r.package_kind,
                r.file_count,
                human_size(r.package_size),
                code(&r.package_digest)
            ));
            md.push_str("| Pushed | nothing (pull request, push off) |\n");
        }
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
            let what = if f.kind == FailureKind::Cancelled { "cancelled" } else { "failed" };
            md.push_str(&format!("### Release capsule {} {what}\n\n", code(&tag)));
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

/// The GitOps records section: the commit and the paths it wrote, what was
/// already recorded, or why nothing was.
pub fn records_markdown(records: Records, notes: &[String]) -> String {
    let mut md = String::new();
    match records {
        Some(Ok(w)) => {
            let place = format!("{} {}", code(&w.repository), code(&w.branch));
            match &w.commit {
                Some(c) => md.push_str(&format!("\n**GitOps records** committed to {place} as {}:\n\n", code(c))),
                None => md.push_str(&format!("\n**GitOps records** already recorded in {place}: no commit.\n\n")),
            }
            for path in &w.written {
                md.push_str(&format!("- wrote {}\n", code(path)));
            }
            for path in &w.kept {
                md.push_str(&format!("- kept {} (already as it should be)\n", code(path)));
            }
            for note in &w.notes {
                md.push_str(&format!("- {}\n", cell(note)));
            }
        }
        Some(Err(f)) => {
            md.push_str("\n**GitOps records** not written: nothing was committed.\n\n");
            md.push_str(&block("text", &format!("{:#}", f.error)));
        }
        None => {}
    }
    for note in notes {
        md.push_str(&format!("\n{}\n", cell(note)));
    }
    md
}

/// The step's Markdown with the preview's: (the check run's summary, its
/// text, the job summary). The preview's table leads both summaries; its
/// objects' sections go to the check run only.
pub fn with_preview(publish: String, preview: &PreviewStep, files_shown: &str) -> (String, Option<String>, String) {
    match preview {
        PreviewStep::Off => (publish.clone(), None, publish),
        PreviewStep::Skipped(line) => {
            let md = format!("{publish}\n> [!NOTE]\n> {}\n", cell(line));
            (md.clone(), None, md)
        }
        PreviewStep::Done(r) => {
            let (summary, text) = crate::preview::report::check_output(r, &publish, files_shown);
            (summary, text, format!("{}\n{publish}", crate::preview::report::job_summary(r, files_shown)))
        }
        PreviewStep::Failed(f) => {
            let what = if f.kind == FailureKind::Cancelled { "cancelled" } else { "failed" };
            let md = format!("{publish}\n### Preview {what}\n\n{}", block("text", &format!("{:#}", f.error)));
            (md.clone(), None, md)
        }
    }
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
    use crate::action::problems::problems;
    use crate::action::verdict::tests::{outcome, settings};
    use crate::failure::Failure;

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
    fn a_missing_image_and_a_cancellation_say_so() {
        let s = settings();
        let mut o = outcome(false, true);
        o.image_missing = true;
        o.message = "image ghcr.io/acme/app:git-x is not in the registry".into();
        let md = markdown(&s, Ok(&o), &[]);
        assert!(md.contains("package validated, no capsule"), "{md}");
        assert!(md.contains("not in the registry"), "{md}");
        assert!(!md.contains("| Capsule |"), "{md}");
        let f = Failure::cancelled(anyhow::anyhow!("cancelled by SIGTERM before uploading the capsule's blobs"));
        let md = markdown(&s, Err(&f), &[]);
        assert!(md.starts_with("### Release capsule `git-ec26c3e57ca3a959ca5aad62de7213c562f8c821` cancelled"), "{md}");
    }
}
