//! The preview's configuration file (spec section 13), parsed once into
//! validated settings. Every error names the file and the field, and says
//! what to write instead.

use std::path::Path;

use serde::Deserialize;

use crate::gitops::target::{BranchName, RepoName, RepoPath};

pub const SCHEMA_VERSION: &str = "release-capsule-preview/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewConfig {
    pub gitops: GitOpsSource,
    /// The values key the stage sets to the image (`setValues`, literally);
    /// `None` when the stage sets none (`imageKey: ""`).
    pub image_key: Option<String>,
    pub environments: Vec<Environment>,
}

/// Where the environments' values live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOpsSource {
    pub repository: RepoName,
    /// A branch, tag or commit of the GitOps repository.
    pub git_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub release_name: String,
    /// The namespace Helm renders into: the step's, or the Kargo Project's
    /// when the step sets none. Required for a Helm package ([`super::run`]
    /// says so); a Kustomize package has no use for it.
    pub namespace: Option<String>,
    /// In the GitOps repository, merged in order.
    pub values_files: Vec<RepoPath>,
    pub rendered: Option<Rendered>,
}

/// What an environment runs now: the files under `path` on `branch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub branch: BranchName,
    pub path: RepoPath,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("preview config {file}: cannot be read")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("preview config {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("preview config {file}: {field}: {message}")]
    Field { file: String, field: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    schema_version: Option<String>,
    gitops: Option<RawGitOps>,
    image_key: Option<String>,
    environments: Option<Vec<RawEnvironment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitOps {
    repository: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEnvironment {
    name: Option<String>,
    release_name: Option<String>,
    namespace: Option<String>,
    values_files: Option<Vec<String>>,
    rendered: Option<RawRendered>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRendered {
    branch: Option<String>,
    path: Option<String>,
}

/// A DNS-1123 label of at most `max` characters: what Helm accepts as a
/// release name (53) and Kubernetes as a namespace (63).
fn dns_label(value: &str, max: usize) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A values path as Helm's `--set` reads it: dot-separated names.
fn valid_image_key(key: &str) -> bool {
    key.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')))
}

struct Fields<'a> {
    file: &'a str,
}

impl Fields<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Field { file: self.file.to_owned(), field: field.into(), message: message.into() }
    }
    fn required<T>(&self, value: Option<T>, field: &str, hint: &str) -> Result<T, ConfigError> {
        value.ok_or_else(|| self.err(field, format!("is required: {hint}")))
    }
}

/// Parses the configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<PreviewConfig, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax { file: file.to_owned(), message: e.to_string() })?;
    let f = Fields { file };
    match raw.schema_version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        Some(other) => return Err(f.err("schemaVersion", format!("{other:?} is not {SCHEMA_VERSION:?}, the version this tool reads"))),
        None => return Err(f.err("schemaVersion", format!("is required: schemaVersion: {SCHEMA_VERSION}"))),
    }
    let gitops = f.required(raw.gitops, "gitops", "the GitOps repository the environments' values live in (repository, ref)")?;
    let repository = f.required(gitops.repository, "gitops.repository", "owner/name, e.g. code-dot-org/k8s-gitops")?;
    let repository: RepoName =
        repository.parse().map_err(|e: crate::gitops::target::TargetError| f.err("gitops.repository", e.to_string()))?;
    let git_ref = gitops.git_ref.map(|r| r.trim().to_owned()).unwrap_or_else(|| "main".into());
    if git_ref.is_empty() || git_ref.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'\\') || git_ref.contains("..") {
        return Err(f.err("gitops.ref", format!("{git_ref:?} is not a branch, tag or commit")));
    }
    let image_key = match raw.image_key.as_deref().map(str::trim) {
        None => Some("image".to_owned()),
        Some("") => None,
        Some(key) if valid_image_key(key) => Some(key.to_owned()),
        Some(key) => return Err(f.err("imageKey", format!("{key:?} is not a values path such as image or app.image; \"\" sets none"))),
    };
    let raw_envs = f.required(raw.environments, "environments", "a list of environments, each with name, releaseName and valuesFiles")?;
    if raw_envs.is_empty() {
        return Err(f.err("environments", "is empty: give at least one environment"));
    }
    let mut environments: Vec<Environment> = Vec::new();
    for (i, e) in raw_envs.into_iter().enumerate() {
        let at = |field: &str| format!("environments[{i}].{field}");
        let name = f.required(e.name, &at("name"), "the environment's name, e.g. staging")?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) || name.starts_with('.') {
            return Err(
                f.err(at("name"), format!("{name:?}: use letters, digits, '-', '_' and '.' (it names the environment's diff file)"))
            );
        }
        if environments.iter().any(|other| other.name == name) {
            return Err(f.err(at("name"), format!("{name:?} is given twice")));
        }
        let release_name = f.required(e.release_name, &at("releaseName"), "the stage's helm-template releaseName")?;
        if !dns_label(&release_name, 53) {
            return Err(f.err(
                at("releaseName"),
                format!("{release_name:?} is not a Helm release name (lowercase letters, digits and '-', at most 53)"),
            ));
        }
        let namespace = match e.namespace {
            Some(ns) if !dns_label(&ns, 63) => {
                return Err(
                    f.err(at("namespace"), format!("{ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"))
                )
            }
            other => other,
        };
        let values_files = e
            .values_files
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, p)| p.parse::<RepoPath>().map_err(|err| f.err(format!("environments[{i}].valuesFiles[{j}]"), err.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let rendered = match e.rendered {
            None => None,
            Some(r) => {
                let branch = f.required(r.branch, &at("rendered.branch"), "the branch the stage renders to, e.g. stage/staging")?;
                let path = f.required(r.path, &at("rendered.path"), "the directory the stage renders into on that branch")?;
                Some(Rendered {
                    branch: branch
                        .parse()
                        .map_err(|err: crate::gitops::target::TargetError| f.err(at("rendered.branch"), err.to_string()))?,
                    path: path.parse().map_err(|err: crate::gitops::target::TargetError| f.err(at("rendered.path"), err.to_string()))?,
                })
            }
        };
        environments.push(Environment { name, release_name, namespace, values_files, rendered });
    }
    Ok(PreviewConfig { gitops: GitOpsSource { repository, git_ref }, image_key, environments })
}

/// Reads and parses the file at `path`; `shown` names it in errors (the
/// path relative to the repository, as the user wrote it).
pub fn load(path: &Path, shown: &str) -> Result<PreviewConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: shown.to_owned(), source })?;
    parse(&text, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "schemaVersion: release-capsule-preview/v1
gitops:                       # where the environment values live
  repository: code-dot-org/k8s-gitops
  ref: main
imageKey: image               # the values key the stage sets to the image (setValues); \"\" = none
environments:
  - name: staging
    releaseName: staging      # helm-template's releaseName
    namespace: codeai         # optional
    valuesFiles:              # in the GitOps repository, merged in order (Kargo's yaml-merge)
      - apps/codeai/envTypes/staging.values.yaml
      - apps/codeai/deployments/staging/values.yaml
    rendered:                 # optional: what this environment runs now
      branch: stage/staging
      path: apps/codeai/deployments/staging/deploy
";

    #[test]
    fn the_spec_example_parses() {
        let c = parse(SPEC_EXAMPLE, ".github/preview.yaml").unwrap();
        assert_eq!(c.gitops.repository.to_string(), "code-dot-org/k8s-gitops");
        assert_eq!(c.gitops.git_ref, "main");
        assert_eq!(c.image_key.as_deref(), Some("image"));
        let e = &c.environments[0];
        assert_eq!((e.name.as_str(), e.release_name.as_str(), e.namespace.as_deref()), ("staging", "staging", Some("codeai")));
        assert_eq!(e.values_files[1].as_str(), "apps/codeai/deployments/staging/values.yaml");
        let r = e.rendered.as_ref().unwrap();
        assert_eq!((r.branch.as_str(), r.path.as_str()), ("stage/staging", "apps/codeai/deployments/staging/deploy"));
        let none = parse(&SPEC_EXAMPLE.replace("imageKey: image", "imageKey: \"\""), "p.yaml").unwrap();
        assert_eq!(none.image_key, None);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                "releaseName: staging",
                "releaseName: Staging_1",
                "preview config p.yaml: environments[0].releaseName: \"Staging_1\" is not a Helm release name",
            ),
            ("ref: main", "ref: a..b", "preview config p.yaml: gitops.ref: \"a..b\" is not a branch"),
            ("- apps/codeai/envTypes", "- ../apps/codeai/envTypes", "preview config p.yaml: environments[0].valuesFiles[0]: \"../apps"),
            ("namespace: codeai", "namespace: Codeai", "preview config p.yaml: environments[0].namespace: \"Codeai\" is not a namespace"),
            ("imageKey: image ", "imageKey: \"a..b\"", "preview config p.yaml: imageKey: \"a..b\" is not a values path"),
            (
                "release-capsule-preview/v1",
                "release-capsule-preview/v2",
                "preview config p.yaml: schemaVersion: \"release-capsule-preview/v2\"",
            ),
            (
                "  repository: code-dot-org/k8s-gitops",
                "  repository: k8s-gitops",
                "preview config p.yaml: gitops.repository: \"k8s-gitops\"",
            ),
            ("      branch: stage/staging\n", "", "preview config p.yaml: environments[0].rendered.branch: is required"),
            (
                "    namespace: codeai",
                "    namespace: codeai\n    extra: 1",
                "preview config p.yaml: environments[0]: unknown field `extra`",
            ),
        ];
        for (from, to, expected) in cases {
            let text = SPEC_EXAMPLE.replacen(from, to, 1);
            assert_ne!(text, SPEC_EXAMPLE, "{from}");
            let err = parse(&text, "p.yaml").unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}\n  expected: {expected}");
        }
        let twice = SPEC_EXAMPLE.to_owned() + &SPEC_EXAMPLE[SPEC_EXAMPLE.find("  - name").unwrap()..];
        assert!(parse(&twice, "p.yaml").unwrap_err().to_string().contains("environments[1].name: \"staging\" is given twice"));
        let err = parse("schemaVersion: release-capsule-preview/v1\ngitops: {repository: a/b}\nenvironments: []\n", "p.yaml").unwrap_err();
        assert_eq!(err.to_string(), "preview config p.yaml: environments: is empty: give at least one environment");
    }
}
