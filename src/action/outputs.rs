//! The runner's files: step outputs, appended to the file `$GITHUB_OUTPUT`
//! names (the `set-output` command is gone), and the job summary, appended to
//! `$GITHUB_STEP_SUMMARY`. One-line outputs are `name=value`; anything else
//! uses the runner's heredoc form `name<<DELIM\nvalue\nDELIM` with a delimiter
//! that does not occur in the value.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::core::ident::hex;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `what` names the file: "the step outputs (GITHUB_OUTPUT)".
    #[error("{path}: cannot append {what}")]
    Write {
        path: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A delimiter that appears nowhere in `value`: a hash of the value, the name
/// and a counter, so it is unique without a random number generator.
fn delimiter_for(name: &str, value: &str) -> String {
    (0u32..)
        .map(|n| {
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update([0]);
            h.update(value.as_bytes());
            h.update(n.to_le_bytes());
            format!("ghadelimiter_{}", &hex(&h.finalize())[..32])
        })
        .find(|d| !value.contains(d.as_str()))
        .unwrap_or_default()
}

/// The text to append for these outputs.
pub fn format(outputs: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (name, value) in outputs {
        if value.contains(['\n', '\r']) {
            let delim = delimiter_for(name, value);
            text.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
        } else {
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    text
}

/// Appends `outputs` to `path` in one write.
pub fn append(path: &Path, outputs: &[(&str, String)]) -> Result<(), OutputError> {
    append_text(path, &format(outputs), "the step outputs (GITHUB_OUTPUT)")
}

/// Appends Markdown to the job summary file at `path`.
pub fn append_summary(path: &Path, markdown: &str) -> Result<(), OutputError> {
    append_text(path, markdown, "the job summary (GITHUB_STEP_SUMMARY)")
}

/// Appends `text` to the file at `path`, creating it if needed.
fn append_text(path: &Path, text: &str, what: &'static str) -> Result<(), OutputError> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(text.as_bytes())?;
        f.flush()
    };
    write().map_err(|source| OutputError::Write { path: path.display().to_string(), what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner's reading of the file (FileCommandManager): `name=value`
    /// lines, or `name<<DELIM` up to a line equal to DELIM.
    fn parse(text: &str) -> Vec<(String, String)> {
        let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if line.is_empty() {
                continue;
            }
            let eq = line.find('=');
            let heredoc = line.find("<<");
            match (eq, heredoc) {
                (Some(e), h) if h.is_none_or(|h| e < h) => out.push((line[..e].to_owned(), line[e + 1..].to_owned())),
                (_, Some(h)) => {
                    let (name, delim) = (&line[..h], &line[h + 2..]);
                    let mut value = Vec::new();
                    loop {
                        let l = lines.get(i).expect("matching delimiter not found");
                        i += 1;
                        if *l == delim {
                            break;
                        }
                        value.push(*l);
                    }
                    out.push((name.to_owned(), value.join("\n")));
                }
                _ => panic!("invalid line {line:?}"),
            }
        }
        out
    }

    #[test]
    fn single_and_multi_line_values_round_trip() {
        let outputs = [
            ("digest", "sha256:00".to_owned()),
            ("ref", "ghcr.io/a/b@sha256:00".to_owned()),
            ("notes", "line one\nline two\nghadelimiter_x".to_owned()),
            ("tricky", "a<<b=c".to_owned()),
            ("published", "true".to_owned()),
            ("empty", String::new()),
        ];
        let text = format(&outputs);
        assert!(text.starts_with("digest=sha256:00\nref=ghcr.io/a/b@sha256:00\nnotes<<ghadelimiter_"), "{text}");
        let parsed = parse(&text);
        let expected: Vec<(String, String)> = outputs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn delimiter_never_occurs_in_the_value() {
        let first = delimiter_for("n", "v\n");
        let hostile = format!("v\n{first}\n");
        let d = delimiter_for("n", &hostile);
        assert!(!hostile.contains(&d));
        let parsed = parse(&format(&[("n", hostile.clone())]));
        assert_eq!(parsed, vec![("n".to_owned(), hostile)]);
    }

    #[test]
    fn append_adds_to_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        std::fs::write(&path, "earlier=1\n").unwrap();
        append(&path, &[("tag", "git-0".to_owned())]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier=1\ntag=git-0\n");
    }
}
