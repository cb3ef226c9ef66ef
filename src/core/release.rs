//! `release.yaml` (spec section 3): written and read back by one pair of
//! functions, so what `build` writes is exactly what `verify` expects to read.

use serde::Deserialize;

use super::quoted_yaml::QuotedYaml;

use super::ident::{Digest, GitSha, Repository, SourceUrl};
use super::package::{ChartInfo, PackageKind};
use super::timestamp::Created;

pub const SCHEMA_VERSION: &str = "release-capsule/v1";
pub const RELEASE_FILE: &str = "release.yaml";
pub const SBOM_PATH: &str = "metadata/sbom.json";
pub const PROVENANCE_PATH: &str = "metadata/provenance.json";

/// Everything that names one release. The same values feed release.yaml, the
/// manifest annotations, the SBOM and the provenance.
#[derive(Debug, Clone)]
pub struct Release {
    pub git_commit: GitSha,
    pub created: Created,
    pub source: SourceUrl,
    pub image: Repository,
    pub image_digest: Digest,
    pub capsule: Repository,
    pub package_kind: PackageKind,
    pub package_digest: Digest,
    pub chart: Option<ChartInfo>,
}

impl Release {
    pub fn tag(&self) -> String {
        self.git_commit.tag()
    }
    pub fn package_path(&self) -> String {
        self.package_kind.capsule_path()
    }
}

/// release.yaml text. Key order and quoting are fixed: every scalar is a string,
/// so no reader turns an all-digit sha into a number.
pub fn render(r: &Release) -> String {
    let tag = r.tag();
    let mut y = QuotedYaml::new();
    y.scalar(0, "schemaVersion", SCHEMA_VERSION);
    y.scalar(0, "gitCommit", r.git_commit.as_str());
    y.scalar(0, "created", &r.created.to_string());
    y.map(0, "source");
    y.scalar(2, "repoURL", r.source.as_str());
    y.map(0, "image");
    y.scalar(2, "repoURL", &r.image.to_string());
    y.scalar(2, "tag", &tag);
    y.scalar(2, "digest", r.image_digest.as_str());
    y.map(0, "capsule");
    y.scalar(2, "repoURL", &r.capsule.to_string());
    y.scalar(2, "tag", &tag);
    y.map(0, "package");
    y.scalar(2, "kind", r.package_kind.as_str());
    y.scalar(2, "path", &r.package_path());
    y.scalar(2, "digest", r.package_digest.as_str());
    if let Some(chart) = &r.chart {
        y.map(2, "chart");
        y.scalar(4, "name", &chart.name);
        y.scalar(4, "version", &chart.version);
        if let Some(app) = &chart.app_version {
            y.scalar(4, "appVersion", app);
        }
    }
    y.map(0, "metadata");
    y.scalar(2, "sbomPath", SBOM_PATH);
    y.scalar(2, "provenancePath", PROVENANCE_PATH);
    y.finish()
}

/// release.yaml as read back, every field optional, so a verifier can name
/// exactly which field is missing or wrong.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReleaseDoc {
    pub schema_version: Option<String>,
    pub git_commit: Option<String>,
    pub created: Option<String>,
    pub source: RepoUrlDoc,
    pub image: ImageDoc,
    pub capsule: CapsuleDoc,
    pub package: PackageDoc,
    pub metadata: MetadataDoc,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct RepoUrlDoc {
    #[serde(rename = "repoURL")]
    pub repo_url: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageDoc {
    #[serde(rename = "repoURL")]
    pub repo_url: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct CapsuleDoc {
    #[serde(rename = "repoURL")]
    pub repo_url: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PackageDoc {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub digest: Option<String>,
    pub chart: Option<ChartDoc>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ChartDoc {
    pub name: Option<String>,
    pub version: Option<String>,
    pub app_version: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataDoc {
    pub sbom_path: Option<String>,
    pub provenance_path: Option<String>,
}

pub fn parse(text: &str) -> Result<ReleaseDoc, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

impl ReleaseDoc {
    /// Whether two documents describe the same release (spec section 7): the
    /// same commit, image digest and package digest.
    pub fn same_release_as(&self, other: &ReleaseDoc) -> bool {
        self.git_commit.is_some()
            && self.git_commit == other.git_commit
            && self.image.digest == other.image.digest
            && self.package.digest == other.package.digest
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Release {
        Release {
            git_commit: "1234567890123456789012345678901234567890".parse().unwrap(),
            created: "2026-11-20T10:11:12Z".parse().unwrap(),
            source: "https://github.com/code-dot-org/code-dot-org".parse().unwrap(),
            image: "ghcr.io/code-dot-org/code-dot-org".parse().unwrap(),
            image_digest: Digest::of(b"image"),
            capsule: "ghcr.io/code-dot-org/codeai-release-capsule".parse().unwrap(),
            package_kind: PackageKind::Helm,
            package_digest: Digest::of(b"package"),
            chart: Some(ChartInfo {
                name: "codeai".into(),
                version: "1.2.3".into(),
                app_version: Some("1e5".into()),
                dependencies: vec![],
            }),
        }
    }

    #[test]
    fn renders_quoted_and_reads_back() {
        let r = sample();
        let text = render(&r);
        assert!(
            text.starts_with("schemaVersion: \"release-capsule/v1\"\ngitCommit: \"1234567890123456789012345678901234567890\"\n"),
            "{text}"
        );
        let doc = parse(&text).unwrap();
        assert_eq!(doc.git_commit.as_deref(), Some(r.git_commit.as_str()));
        assert_eq!(doc.image.tag.as_deref(), Some("git-1234567890123456789012345678901234567890"));
        assert_eq!(doc.capsule.tag, doc.image.tag);
        assert_eq!(doc.package.path.as_deref(), Some("package/helm"));
        assert_eq!(doc.package.chart.unwrap().app_version.as_deref(), Some("1e5"));
        assert_eq!(doc.metadata.sbom_path.as_deref(), Some(SBOM_PATH));
        // A generic YAML reader keeps the all-digit sha a string.
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(v["gitCommit"].is_string());
    }
}
