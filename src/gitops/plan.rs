//! What a commit must change, decided purely from what the files should be
//! and what the repository holds. Files are compared by git blob id, which
//! is computed here from the bytes, so nothing is downloaded to compare.

use std::collections::BTreeMap;

use sha1::{Digest as _, Sha1};

use super::snapshot::Listing;

/// The mode every file is written with (capsule files are all 0644).
pub const FILE_MODE: &str = "100644";

/// git's object id for a blob of `bytes` (`git hash-object`).
pub fn blob_sha(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    crate::core::ident::hex(&h.finalize())
}

/// A file a directory should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Relative to the directory.
    pub path: String,
    pub bytes: Vec<u8>,
    pub sha: String,
}

impl Desired {
    pub fn new(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        let sha = blob_sha(&bytes);
        Self { path: path.into(), bytes, sha }
    }
}

/// What one kind of record contributes to the commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// Full path → the blob it gets, or `None` to delete it.
    pub changes: BTreeMap<String, Option<String>>,
    /// Blob id → content, for every blob `changes` sets.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// What this part writes, for the commit message and the report.
    pub written: Vec<String>,
    /// What was already as it should be.
    pub kept: Vec<String>,
    /// Anything else worth telling (a `current` left where it was).
    pub notes: Vec<String>,
}

impl Part {
    pub fn merge(&mut self, other: Part) {
        self.changes.extend(other.changes);
        self.blobs.extend(other.blobs);
        self.written.extend(other.written);
        self.kept.extend(other.kept);
        self.notes.extend(other.notes);
    }

    /// Adds the changes that make `dir` hold exactly `desired`, given the
    /// paths where it differs now ([`differences`]).
    pub fn mirror(&mut self, dir: &str, desired: &[Desired], differing: &[String]) {
        for rel in differing {
            let file = desired.iter().find(|d| &d.path == rel);
            if let Some(d) = file {
                self.blobs.insert(d.sha.clone(), d.bytes.clone());
            }
            self.changes.insert(format!("{dir}/{rel}"), file.map(|d| d.sha.clone()));
        }
    }

    /// Sets one file.
    pub fn put(&mut self, path: String, file: &Desired) {
        self.blobs.insert(file.sha.clone(), file.bytes.clone());
        self.changes.insert(path, Some(file.sha.clone()));
    }
}

/// The paths (relative to the directory) where `existing` differs from
/// `desired`: added, changed (content or mode) and extra files. Empty when
/// the directory already holds exactly `desired`.
pub fn differences(desired: &[Desired], existing: Option<&Listing>) -> Vec<String> {
    let empty = Listing::new();
    let existing = existing.unwrap_or(&empty);
    let mut out: Vec<String> = desired
        .iter()
        .filter(|d| existing.get(&d.path).is_none_or(|e| e.sha != d.sha || e.mode != FILE_MODE))
        .map(|d| d.path.clone())
        .collect();
    out.extend(existing.keys().filter(|p| !desired.iter().any(|d| &d.path == *p)).cloned());
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::snapshot::Listed;

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(blob_sha(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(blob_sha(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    fn listing(files: &[(&str, &[u8], &str)]) -> Listing {
        files.iter().map(|(p, b, mode)| (p.to_string(), Listed { mode: mode.to_string(), sha: blob_sha(b) })).collect()
    }

    #[test]
    fn mirroring_writes_only_what_differs_and_deletes_extras() {
        let desired = vec![Desired::new("a.yaml", b"a\n".to_vec()), Desired::new("helm/b.yaml", b"b\n".to_vec())];
        let mut part = Part::default();
        part.mirror("d", &desired, &differences(&desired, None));
        assert_eq!(part.changes.len(), 2);
        assert_eq!(part.blobs.len(), 2);

        let same = listing(&[("a.yaml", b"a\n", FILE_MODE), ("helm/b.yaml", b"b\n", FILE_MODE)]);
        assert!(differences(&desired, Some(&same)).is_empty());

        let other = listing(&[("a.yaml", b"a\n", "100755"), ("helm/b.yaml", b"old\n", FILE_MODE), ("kustomize/x", b"x", FILE_MODE)]);
        assert_eq!(differences(&desired, Some(&other)), ["a.yaml", "helm/b.yaml", "kustomize/x"]);
        let mut part = Part::default();
        part.mirror("d", &desired, &differences(&desired, Some(&other)));
        assert_eq!(part.changes.get("d/kustomize/x"), Some(&None), "an extra file is deleted");
        assert_eq!(part.changes.get("d/a.yaml"), Some(&Some(blob_sha(b"a\n"))), "a mode change is rewritten");
    }
}
