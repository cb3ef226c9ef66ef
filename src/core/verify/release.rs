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
mod tests;
