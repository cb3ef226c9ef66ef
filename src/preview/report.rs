//! The preview as the check run and the job summary show it: a table first,
//! one row per environment, then each environment's objects, each in a
//! collapsible section, for as long as GitHub's 65,535 characters per field
//! (summary, then text) last. What does not fit is counted and named; the
//! complete diff is in the files under `preview-path`.

use std::fmt::Write as _;

use super::baseline::Found;
use super::compare::{ChangeKind, Comparison, ObjectChange};
use super::{EnvironmentResult, PreviewReport};
use crate::github::MAX_OUTPUT_TEXT;
use crate::markdown::{block, cell, code};

/// Room kept at the end of a field for the note on what was left out.
const RESERVED: usize = 3_000;
/// How much of that note may name objects.
const NAMES_BUDGET: usize = 1_800;

/// "1 added, 2 changed, 0 removed", or "no changes".
pub fn counts(c: &Comparison) -> String {
    if c.is_empty() {
        return "no changes".into();
    }
    let changed = c.count(ChangeKind::Changed);
    let image = if c.image_only.is_empty() { String::new() } else { format!(" ({} only the image)", c.image_only.len()) };
    format!("{} added, {changed} changed{image}, {} removed", c.count(ChangeKind::Added), c.count(ChangeKind::Removed))
}

/// The one line an image-only change comes to, if any.
pub fn image_line(c: &Comparison, image_ref: &str) -> Option<String> {
    if c.image_only.is_empty() {
        return None;
    }
    let old: Vec<String> = c.old_images.iter().map(|i| code(i)).collect();
    let n = c.image_only.len();
    Some(format!(
        "image {} → {} in {n} object{} (nothing else changes there)",
        old.join(", "),
        code(image_ref),
        if n == 1 { "" } else { "s" }
    ))
}

/// What "this change" was compared against.
pub fn baseline_line(found: &Found) -> String {
    match found {
        Found::Capsule(b) if b.steps_back == 0 => {
            format!("This change: against base capsule {} (`git-{}`, the pull request's merge base).", code(&b.capsule), b.sha.short())
        }
        Found::Capsule(b) => format!(
            "This change: against base capsule {} (`git-{}`, {} first-parent commits before the merge base `{}`, which has no capsule).",
            code(&b.capsule),
            b.sha.short(),
            b.steps_back,
            b.merge_base.short()
        ),
        Found::Nothing { merge_base, looked_at } => format!(
            "This change: not compared: no capsule for the merge base `{}` or its first parents ({looked_at} commits looked at).",
            merge_base.short()
        ),
    }
}

fn now_cell(env: &EnvironmentResult) -> String {
    match (&env.against_now, &env.rendered) {
        (Some(c), _) => counts(c),
        (None, Some(_)) => "nothing rendered yet".into(),
        (None, None) => "not configured".into(),
    }
}

/// The table and the lines under it (the start of the check run's summary).
pub fn table(report: &PreviewReport) -> String {
    let mut md = String::from("### Preview: what this pull request does to each environment\n\n");
    md.push_str("| Environment | This change (added, changed, removed) | Against what runs now |\n| --- | --- | --- |\n");
    for env in &report.environments {
        let this = env.this_change.as_ref().map_or_else(|| "no base capsule".to_owned(), counts);
        let _ = writeln!(md, "| {} | {} | {} |", code(&env.name), cell(&this), cell(&now_cell(env)));
    }
    let _ = write!(md, "\n{}\nRendered with image {}.\n", baseline_line(&report.baseline), code(&report.image_ref));
    for env in &report.environments {
        if let Some(line) = env.against_now.as_ref().and_then(|c| image_line(c, &report.image_ref)) {
            let _ = writeln!(md, "- {}, against what runs now: {line}", code(&env.name));
        }
        for note in &env.notes {
            let _ = writeln!(md, "- {}: {}", code(&env.name), cell(note));
        }
    }
    report.scrubber.scrub(&md)
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A piece of the report: a heading, or one object's section.
struct Block {
    text: String,
    /// The object it shows, to name it when it does not fit.
    object: Option<String>,
}

fn object_block(env: &str, change: &ObjectChange) -> Block {
    let summary = format!(
        "{} <code>{}</code> (+{} −{})",
        change.kind.word(),
        html(&change.key.to_string()),
        change.lines_added,
        change.lines_removed
    );
    Block {
        text: format!("<details><summary>{summary}</summary>\n\n{}\n</details>\n\n", block("diff", &change.diff)),
        object: Some(format!("{env}: {} {}", change.kind.word(), change.key)),
    }
}

fn blocks(report: &PreviewReport) -> Vec<Block> {
    let heading = |text: String| Block { text, object: None };
    let mut out = Vec::new();
    for env in &report.environments {
        out.push(heading(format!("#### {}\n\n", code(&env.name))));
        let comparisons = [
            ("This change", env.this_change.as_ref(), "against the base capsule".to_owned()),
            (
                "Against what runs now",
                env.against_now.as_ref(),
                env.rendered.as_ref().map_or_else(String::new, |(b, p)| format!("{} on {}", code(p), code(b))),
            ),
        ];
        for (title, c, against) in comparisons {
            let Some(c) = c else { continue };
            let mut head = format!("**{title}** ({against}): {}\n\n", counts(c));
            if let Some(line) = image_line(c, &report.image_ref) {
                let _ = write!(head, "- {line}\n\n");
            }
            out.push(heading(head));
            out.extend(c.changes.iter().map(|change| object_block(&env.name, change)));
        }
    }
    out
}

/// The check run's summary (`table`, then `middle`: the rest of the step's
/// summary, then sections) and text (the sections that did not fit in the
/// summary), each within GitHub's limit, with what was left out named.
pub fn check_output(report: &PreviewReport, middle: &str, files_shown: &str) -> (String, Option<String>) {
    let scrub = |t: &str| report.scrubber.scrub(t);
    let mut fields = [table(report) + "\n" + middle + "\n", String::new()];
    let mut sizes = [fields[0].chars().count(), 0];
    let mut field = 0;
    let mut left_out: Vec<String> = Vec::new();
    for b in blocks(report) {
        let text = scrub(&b.text);
        let n = text.chars().count();
        if field == 0 && sizes[0] + n > MAX_OUTPUT_TEXT - RESERVED {
            field = 1;
        }
        if sizes[field] + n <= MAX_OUTPUT_TEXT - RESERVED {
            fields[field].push_str(&text);
            sizes[field] += n;
        } else if let Some(name) = b.object {
            left_out.push(name);
        }
    }
    if !left_out.is_empty() {
        let mut named = String::new();
        let mut shown = 0;
        for name in &left_out {
            if named.chars().count() + name.len() > NAMES_BUDGET {
                break;
            }
            let _ = write!(named, "{}{}", if shown == 0 { "" } else { "; " }, cell(name));
            shown += 1;
        }
        let more = if shown < left_out.len() { format!("; and {} more", left_out.len() - shown) } else { String::new() };
        let note = format!(
            "\n> [!NOTE]\n> {} object{} not shown here (GitHub's limit is 65,535 characters per field): {named}{more}. \
             The complete diff is in {}, one file per environment (the preview-path output, for actions/upload-artifact).\n",
            left_out.len(),
            if left_out.len() == 1 { "" } else { "s" },
            code(files_shown)
        );
        fields[field].push_str(&scrub(&note));
    }
    let [summary, text] = fields;
    (
        crate::github::truncate_chars(&summary, MAX_OUTPUT_TEXT),
        (!text.is_empty()).then(|| crate::github::truncate_chars(&text, MAX_OUTPUT_TEXT)),
    )
}

/// The job summary's part: the table, and where the complete diff is.
pub fn job_summary(report: &PreviewReport, files_shown: &str) -> String {
    format!(
        "{}\nThe objects' diffs are on the check run; all of them, one file per environment, in {}.\n",
        table(report),
        code(files_shown)
    )
}
