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
        ("provenancePath: \"metadata/provenance.json\"".into(), "provenancePath: \"/etc/passwd\"".into(), vec!["metadata.provenancePath"]),
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
