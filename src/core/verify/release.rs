//! Step 4: release.yaml agrees with the capsule (its package digest, the
//! manifest annotations, the archive's entries, the metadata files, and layer
//! 1's chart directory) and with what the caller expects (the image, the
//! tags, the digests).

use std::collections::BTreeMap;

use super::{ChartLayerFiles, Checks, MISSING};
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{ANN_CREATED, ANN_IMAGE, ANN_PACKAGE_DIGEST, ANN_PACKAGE_KIND, ANN_REVISION, ANN_SOURCE};
use crate::core::package::{tree_digest, PackageKind};
use crate::core::release::{self, ReleaseDoc, PROVENANCE_PATH, RELEASE_FILE, SBOM_PATH, SCHEMA_VERSION};
use crate::core::unpack::UnpackedFile;

/// What the capsule must say, from the command line and the registry.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub image: Repository,
    /// The tag of `--image`: `git-<sha>`.
    pub image_tag: String,
    /// `--image-digest`, when given.
    pub image_digest: Option<Digest>,
    /// What `<image>:<image_tag>` resolves to now; `None` when the tag is absent.
    pub resolved_image_digest: Option<Digest>,
    pub capsule: Repository,
    /// The tag of `--capsule`, when it named one.
    pub capsule_tag: Option<String>,
}

/// Step 4: release.yaml, the unpacked tree and the manifest annotations agree
/// with each other and with `expect`. Returns release.yaml when it parsed.
pub fn check_release(
    checks: &mut Checks,
    expect: &Expectations,
    annotations: &BTreeMap<String, String>,
    files: &[UnpackedFile],
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    chart: Option<&ChartLayerFiles>,
) -> Option<ReleaseDoc> {
    let doc = read_release(checks, files, read);
    if let Some(doc) = &doc {
        check_fields(checks, expect, doc);
    }
    check_contents(checks, doc.as_ref(), annotations, files, read, chart);
    doc
}

/// The part of step 4 that depends on the capsule alone, not on what the
/// caller expects: the package digest, the annotations, the archive's entries
/// and the metadata files. The verifier service caches it by capsule digest.
pub fn check_contents(
    checks: &mut Checks,
    doc: Option<&ReleaseDoc>,
    annotations: &BTreeMap<String, String>,
    files: &[UnpackedFile],
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    chart: Option<&ChartLayerFiles>,
) {
    if let Some(doc) = doc {
        check_package(checks, doc, files);
        check_annotations(checks, doc, annotations);
        if let Some(chart) = chart {
            super::chart::check_chart_name(checks, doc, chart);
        }
    }
    check_entries(checks, doc, files);
    for path in [SBOM_PATH, PROVENANCE_PATH] {
        match read_listed(files, read, path) {
            None => checks.that(path, false, "a JSON file", "missing"),
            Some(bytes) => match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Ok(_) => checks.that(path, true, "a JSON file", "a JSON file"),
                Err(e) => checks.that(path, false, "a JSON file", format_args!("invalid JSON: {e}")),
            },
        };
    }
}

/// The bytes of `path`, read only when unpack listed it as a file.
fn read_listed(files: &[UnpackedFile], read: &dyn Fn(&str) -> Option<Vec<u8>>, path: &str) -> Option<Vec<u8>> {
    files.iter().any(|f| f.path == path).then(|| read(path)).flatten()
}

/// release.yaml, parsed, with every scalar a string.
pub fn read_release(checks: &mut Checks, files: &[UnpackedFile], read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<ReleaseDoc> {
    let expected = "release.yaml as spec section 3 describes";
    let Some(bytes) = read_listed(files, read, RELEASE_FILE) else {
        checks.that(RELEASE_FILE, false, expected, "missing");
        return None;
    };
    let parsed = std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(|text| release::parse(text).map_err(|e| e.to_string()));
    match parsed {
        Ok(doc) => {
            checks.that(RELEASE_FILE, true, expected, "a valid document");
            if let Ok(value) = serde_yaml::from_slice::<serde_yaml::Value>(&bytes) {
                check_scalars_are_strings(checks, &value, "");
            }
            Some(doc)
        }
        Err(e) => {
            checks.that(RELEASE_FILE, false, expected, format_args!("unreadable YAML: {e}"));
            None
        }
    }
}

/// Every scalar must be a string (spec section 3): Kargo's `yaml-parse` turns an
/// unquoted all-digit sha into a number and its `'git-' + gitCommit` check fails.
fn check_scalars_are_strings(checks: &mut Checks, value: &serde_yaml::Value, path: &str) {
    use serde_yaml::Value;
    let kind = match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
                let child_path = if path.is_empty() { key } else { format!("{path}.{key}") };
                check_scalars_are_strings(checks, child, &child_path);
            }
            return;
        }
        Value::String(_) => return,
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Null => "null".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    };
    checks.that(path, false, "a double-quoted string", kind);
}

/// release.yaml against what the caller expects (the image, the tags, the digests).
pub fn check_fields(checks: &mut Checks, expect: &Expectations, doc: &ReleaseDoc) {
    let tag = expect.image_tag.as_str();
    let sha = tag.strip_prefix("git-").unwrap_or(tag);
    checks.equal("schemaVersion", SCHEMA_VERSION, doc.schema_version.as_deref());
    checks.equal("gitCommit", sha, doc.git_commit.as_deref());
    checks.equal("image.repoURL", &expect.image.to_string(), doc.image.repo_url.as_deref());
    checks.equal("image.tag", tag, doc.image.tag.as_deref());
    checks.equal("capsule.repoURL", &expect.capsule.to_string(), doc.capsule.repo_url.as_deref());
    checks.equal("capsule.tag", tag, doc.capsule.tag.as_deref());
    if let Some(capsule_tag) = &expect.capsule_tag {
        // The tag the capsule was fetched by pairs with the image tag (spec section 1).
        checks.that("capsule tag (--capsule)", capsule_tag == tag, tag, capsule_tag);
    }
    let doc_digest = doc.image.digest.as_deref();
    if let Some(flag) = &expect.image_digest {
        checks.equal("image.digest (--image-digest)", flag.as_str(), doc_digest);
    }
    match &expect.resolved_image_digest {
        Some(now) => checks.equal("image.digest (registry)", now.as_str(), doc_digest),
        None => checks.that(
            "image.digest (registry)",
            false,
            format_args!("{} to exist in the registry", expect.image.with_tag(tag)),
            "no such tag",
        ),
    };
    checks.equal("metadata.sbomPath", SBOM_PATH, doc.metadata.sbom_path.as_deref());
    checks.equal("metadata.provenancePath", PROVENANCE_PATH, doc.metadata.provenance_path.as_deref());
}

/// The package directory release.yaml names, when it is one section 2 allows.
fn package_path(doc: &ReleaseDoc) -> Option<String> {
    let kind: PackageKind = doc.package.kind.as_deref()?.parse().ok()?;
    Some(kind.capsule_path())
}

fn check_package(checks: &mut Checks, doc: &ReleaseDoc, files: &[UnpackedFile]) {
    let path = package_path(doc);
    checks.that("package.kind", path.is_some(), "helm or kustomize", doc.package.kind.as_deref().unwrap_or(MISSING));
    let Some(path) = path else { return };
    checks.equal("package.path", &path, doc.package.path.as_deref());
    let prefix = format!("{path}/");
    let under: Vec<(&str, &Digest)> = files.iter().filter_map(|f| Some((f.path.strip_prefix(&prefix)?, &f.sha256))).collect();
    let count = under.len();
    let recomputed = tree_digest(under.into_iter());
    // Expected is what the files hash to: release.yaml must describe the package it ships.
    checks.that(
        "package.digest",
        doc.package.digest.as_deref() == Some(recomputed.as_str()),
        format_args!("{recomputed} (recomputed from {count} files under {path}/)"),
        doc.package.digest.as_deref().unwrap_or(MISSING),
    );
}

/// The archive root holds exactly release.yaml, the package and the metadata files.
fn check_entries(checks: &mut Checks, doc: Option<&ReleaseDoc>, files: &[UnpackedFile]) {
    let prefix = doc.and_then(package_path).map_or_else(|| "package/".to_owned(), |p| format!("{p}/"));
    let extra: Vec<&str> = files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| ![RELEASE_FILE, SBOM_PATH, PROVENANCE_PATH].contains(p) && !p.starts_with(&prefix))
        .collect();
    let shown = match extra.len() {
        0 => "nothing else".to_owned(),
        n if n <= 5 => extra.join(", "),
        n => format!("{} and {} more", extra[..5].join(", "), n - 5),
    };
    checks.that(
        "archive entries",
        extra.is_empty(),
        format_args!("only {RELEASE_FILE}, {SBOM_PATH}, {PROVENANCE_PATH} and files under {prefix}"),
        shown,
    );
}

/// The manifest annotations say what release.yaml says (spec section 5).
fn check_annotations(checks: &mut Checks, doc: &ReleaseDoc, annotations: &BTreeMap<String, String>) {
    let image = match (&doc.image.repo_url, &doc.image.digest) {
        (Some(repo), Some(digest)) => Some(format!("{repo}@{digest}")),
        _ => None,
    };
    let pairs = [
        (ANN_REVISION, doc.git_commit.clone()),
        (ANN_IMAGE, image),
        (ANN_PACKAGE_KIND, doc.package.kind.clone()),
        (ANN_PACKAGE_DIGEST, doc.package.digest.clone()),
        (ANN_SOURCE, doc.source.repo_url.clone()),
        (ANN_CREATED, doc.created.clone()),
    ];
    for (key, from_release) in pairs {
        let actual = annotations.get(key).map(String::as_str);
        checks.that(
            &format!("annotations[{key}]"),
            from_release.is_some() && actual == from_release.as_deref(),
            from_release.as_deref().unwrap_or(MISSING),
            actual.unwrap_or(MISSING),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::core::manifest;
    use crate::core::release::{render, tests::sample, Release};
    use crate::core::verify::Check;

    /// A consistent capsule: its files (path → bytes), its release and annotations.
    struct Fixture {
        release: Release,
        files: HashMap<String, Vec<u8>>,
    }

    impl Fixture {
        fn new() -> Self {
            let mut release = sample();
            let mut files: HashMap<String, Vec<u8>> = HashMap::from([
                ("package/helm/Chart.yaml".to_owned(), b"apiVersion: v2\nname: codeai\nversion: 1.2.3\n".to_vec()),
                ("package/helm/templates/cm.yaml".to_owned(), b"kind: ConfigMap\n".to_vec()),
                (SBOM_PATH.to_owned(), b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec()),
                (PROVENANCE_PATH.to_owned(), b"{}".to_vec()),
            ]);
            let digests: Vec<(String, Digest)> =
                files.iter().filter_map(|(p, b)| Some((p.strip_prefix("package/helm/")?.to_owned(), Digest::of(b)))).collect();
            release.package_digest = tree_digest(digests.iter().map(|(p, d)| (p.as_str(), d)));
            files.insert(RELEASE_FILE.to_owned(), render(&release).into_bytes());
            Self { release, files }
        }

        fn expectations(&self) -> Expectations {
            Expectations {
                image: self.release.image.clone(),
                image_tag: self.release.tag(),
                image_digest: Some(self.release.image_digest.clone()),
                resolved_image_digest: Some(self.release.image_digest.clone()),
                capsule: self.release.capsule.clone(),
                capsule_tag: Some(self.release.tag()),
            }
        }

        fn annotations(&self) -> BTreeMap<String, String> {
            manifest::annotations(&self.release)
        }

        fn edit_release(&mut self, from: &str, to: &str) {
            let text = String::from_utf8(self.files[RELEASE_FILE].clone()).unwrap();
            assert!(text.contains(from), "{from:?} not in release.yaml");
            self.files.insert(RELEASE_FILE.to_owned(), text.replacen(from, to, 1).into_bytes());
        }

        fn run(&self, expect: &Expectations, annotations: &BTreeMap<String, String>) -> (Option<ReleaseDoc>, Checks) {
            let mut listed: Vec<UnpackedFile> =
                self.files.iter().map(|(p, b)| UnpackedFile { path: p.clone(), size: b.len() as u64, sha256: Digest::of(b) }).collect();
            listed.sort_by(|a, b| a.path.cmp(&b.path));
            let read = |p: &str| self.files.get(p).cloned();
            let mut checks = Checks::default();
            let doc = check_release(&mut checks, expect, annotations, &listed, &read, None);
            (doc, checks)
        }

        fn failures(&self, expect: &Expectations) -> Vec<Check> {
            self.run(expect, &self.annotations()).1.failed().cloned().collect()
        }
    }

    fn names(failed: &[Check]) -> Vec<&str> {
        failed.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_consistent_capsule_passes_every_check() {
        let f = Fixture::new();
        let (doc, checks) = f.run(&f.expectations(), &f.annotations());
        assert!(checks.all_ok(), "{}", checks.failure_lines());
        assert_eq!(doc.unwrap().git_commit.as_deref(), Some(f.release.git_commit.as_str()));
        for name in ["schemaVersion", "gitCommit", "package.digest", "image.digest (registry)", "annotations[vnd.release-capsule.image]"] {
            assert!(checks.get(name).is_some_and(|c| c.ok), "{name} was not checked");
        }
    }

    #[test]
    fn each_release_field_failure_is_named_with_expected_and_actual() {
        let sha = sample().git_commit.to_string();
        let other_sha = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";
        let other_digest = Digest::of(b"other image").to_string();
        let image_digest = sample().image_digest.to_string();
        // (edit of release.yaml, the checks that must fail)
        let cases: Vec<(String, String, Vec<&str>)> = vec![
            ("release-capsule/v1".into(), "release-capsule/v9".into(), vec!["schemaVersion"]),
            (
                format!("gitCommit: \"{sha}\""),
                format!("gitCommit: \"{other_sha}\""),
                vec!["gitCommit", "annotations[org.opencontainers.image.revision]"],
            ),
            (
                "repoURL: \"ghcr.io/code-dot-org/code-dot-org\"".into(),
                "repoURL: \"ghcr.io/evil/app\"".into(),
                vec!["image.repoURL", "annotations[vnd.release-capsule.image]"],
            ),
            (format!("  tag: \"git-{sha}\"\n  digest"), format!("  tag: \"git-{other_sha}\"\n  digest"), vec!["image.tag"]),
            (format!("  tag: \"git-{sha}\"\npackage"), format!("  tag: \"git-{other_sha}\"\npackage"), vec!["capsule.tag"]),
            ("ghcr.io/code-dot-org/codeai-release-capsule".into(), "ghcr.io/code-dot-org/other".into(), vec!["capsule.repoURL"]),
            (
                format!("digest: \"{image_digest}\""),
                format!("digest: \"{other_digest}\""),
                vec!["image.digest (--image-digest)", "image.digest (registry)", "annotations[vnd.release-capsule.image]"],
            ),
            ("path: \"package/helm\"".into(), "path: \"package/kustomize\"".into(), vec!["package.path"]),
            ("sbomPath: \"metadata/sbom.json\"".into(), "sbomPath: \"sbom.json\"".into(), vec!["metadata.sbomPath"]),
            (
                "provenancePath: \"metadata/provenance.json\"".into(),
                "provenancePath: \"/etc/passwd\"".into(),
                vec!["metadata.provenancePath"],
            ),
            ("kind: \"helm\"".into(), "kind: \"jsonnet\"".into(), vec!["package.kind", "annotations[vnd.release-capsule.package.kind]"]),
        ];
        for (from, to, expected) in cases {
            let mut f = Fixture::new();
            f.edit_release(&from, &to);
            let failed = f.failures(&f.expectations());
            assert_eq!(names(&failed), expected, "edit {from:?} -> {to:?}");
            for c in &failed {
                assert!(c.to_string().starts_with(&format!("{}: expected ", c.name)), "{c}");
            }
        }
    }

    #[test]
    fn messages_show_expected_and_actual_values() {
        let mut f = Fixture::new();
        let other_sha = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";
        f.edit_release(&format!("gitCommit: \"{}\"", f.release.git_commit), &format!("gitCommit: \"{other_sha}\""));
        let failed = f.failures(&f.expectations());
        assert_eq!(failed[0].to_string(), format!("gitCommit: expected {}, got {other_sha}", f.release.git_commit));
    }

    #[test]
    fn expectations_from_the_command_line_and_registry_are_checked() {
        let f = Fixture::new();
        let other = Digest::of(b"rebuilt image");
        let mut e = f.expectations();
        e.image_digest = Some(other.clone());
        let failed = f.failures(&e);
        assert_eq!(names(&failed), ["image.digest (--image-digest)"]);
        assert_eq!(failed[0].expected, other.as_str());
        assert_eq!(failed[0].actual, f.release.image_digest.as_str());

        let mut e = f.expectations();
        e.resolved_image_digest = Some(other.clone());
        assert_eq!(names(&f.failures(&e)), ["image.digest (registry)"]);
        e.resolved_image_digest = None;
        let failed = f.failures(&e);
        assert_eq!(names(&failed), ["image.digest (registry)"]);
        assert_eq!(failed[0].actual, "no such tag");

        // The image tag names another release: every tag pairing fails.
        let mut e = f.expectations();
        e.image_tag = "git-abcdefabcdefabcdefabcdefabcdefabcdefabcd".into();
        assert_eq!(names(&f.failures(&e)), ["gitCommit", "image.tag", "capsule.tag", "capsule tag (--capsule)"]);
        // The capsule was fetched by a tag other than the image's.
        let mut e = f.expectations();
        e.capsule_tag = Some("latest".into());
        assert_eq!(names(&f.failures(&e)), ["capsule tag (--capsule)"]);
        let mut e = f.expectations();
        e.image = "ghcr.io/code-dot-org/other".parse().unwrap();
        assert_eq!(names(&f.failures(&e)), ["image.repoURL"]);
        let mut e = f.expectations();
        e.capsule = "ghcr.io/code-dot-org/other".parse().unwrap();
        assert_eq!(names(&f.failures(&e)), ["capsule.repoURL"]);
    }

    #[test]
    fn tampered_missing_and_extra_files_fail() {
        let mut f = Fixture::new();
        f.files.insert("package/helm/templates/cm.yaml".into(), b"kind: Secret\n".to_vec());
        let failed = f.failures(&f.expectations());
        assert_eq!(names(&failed), ["package.digest"]);
        assert!(failed[0].expected.contains("recomputed from 2 files under package/helm/"), "{}", failed[0]);
        assert_eq!(failed[0].actual, f.release.package_digest.as_str());

        let mut f = Fixture::new();
        f.files.remove(SBOM_PATH);
        f.files.insert(PROVENANCE_PATH.into(), b"{not json".to_vec());
        let failed = f.failures(&f.expectations());
        assert_eq!(names(&failed), [SBOM_PATH, PROVENANCE_PATH]);
        assert_eq!(failed[0].actual, "missing");
        assert!(failed[1].actual.starts_with("invalid JSON"), "{}", failed[1]);

        let mut f = Fixture::new();
        f.files.insert("extra.sh".into(), b"#!/bin/sh\n".to_vec());
        let failed = f.failures(&f.expectations());
        assert_eq!(names(&failed), ["archive entries"]);
        assert_eq!(failed[0].actual, "extra.sh");

        let mut f = Fixture::new();
        f.files.remove(RELEASE_FILE);
        assert_eq!(names(&f.failures(&f.expectations())), [RELEASE_FILE]);
        let mut f = Fixture::new();
        f.files.insert(RELEASE_FILE.into(), b"gitCommit: [unclosed\n".to_vec());
        let failed = f.failures(&f.expectations());
        assert_eq!(names(&failed), [RELEASE_FILE]);
        assert!(failed[0].actual.starts_with("unreadable YAML"), "{}", failed[0]);
    }

    #[test]
    fn unquoted_numbers_and_missing_fields_are_reported() {
        let mut f = Fixture::new();
        f.edit_release("schemaVersion: \"release-capsule/v1\"\n", "");
        f.edit_release("  digest: \"sha256:", "  digestx: \"sha256:");
        let failed = f.failures(&f.expectations());
        assert_eq!(
            names(&failed),
            ["schemaVersion", "image.digest (--image-digest)", "image.digest (registry)", "annotations[vnd.release-capsule.image]"]
        );
        assert!(failed.iter().all(|c| c.actual == MISSING || c.expected == MISSING), "{failed:?}");
        // An all-digit sha written unquoted is a YAML number: Kargo's check would fail, so must ours.
        let mut f = Fixture::new();
        let sha = f.release.git_commit.to_string();
        f.edit_release(&format!("gitCommit: \"{sha}\""), &format!("gitCommit: {sha}"));
        f.edit_release("appVersion: \"1e5\"", "appVersion: 1e5");
        let failed = f.failures(&f.expectations());
        assert_eq!(names(&failed), ["gitCommit", "package.chart.appVersion"]);
        assert!(failed[0].to_string().starts_with("gitCommit: expected a double-quoted string, got the number 1.2345"), "{}", failed[0]);
    }

    #[test]
    fn annotations_must_match_release_yaml() {
        let f = Fixture::new();
        let mut ann = f.annotations();
        ann.insert(ANN_PACKAGE_DIGEST.into(), Digest::of(b"x").to_string());
        ann.remove(ANN_CREATED);
        let (_, checks) = f.run(&f.expectations(), &ann);
        let failed: Vec<Check> = checks.failed().cloned().collect();
        assert_eq!(names(&failed), ["annotations[vnd.release-capsule.package.digest]", "annotations[org.opencontainers.image.created]"]);
        assert_eq!(failed[1].actual, MISSING);
    }
}
