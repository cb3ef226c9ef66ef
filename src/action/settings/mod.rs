//! The action's inputs, resolved once. The runner hands a container action
//! its inputs as `INPUT_<NAME>` variables (upper-cased, spaces to `_`, hyphens
//! kept: `INPUT_PACKAGE-PATH`) and an empty string for an input nobody set;
//! the run's facts come as `GITHUB_*` variables and the event payload.
//! [`resolve`] is a pure function of those: everything after it holds
//! parsed values only.

mod event;
pub mod gitops;
pub mod preview;

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::cli::OnConflict;
use crate::core::ident::{GitSha, IdentError, Repository, SourceUrl};
use crate::core::package::PackageKind;
use crate::core::timestamp::Created;
use crate::github::Token;
use crate::settings::{CapsuleSettings, Env, PublishSettings, RegistryCredentials};

pub use self::event::Event;
use self::event::{is_fork, push_commit_date, resolve_sha};

pub use crate::github::DEFAULT_API_URL;
pub const DEFAULT_SERVER_URL: &str = "https://github.com";
pub const DEFAULT_CHECK_NAME: &str = "release-capsule";

/// The variable the runner sets for an input.
pub fn input_var(name: &str) -> String {
    format!("INPUT_{}", name.trim().replace(' ', "_").to_uppercase())
}

/// An input's value; the empty string (what the runner passes for an unset
/// input) counts as unset.
pub fn input(env: Env, name: &str) -> Option<String> {
    var(env, &input_var(name))
}

/// A variable's trimmed value; empty counts as unset.
fn var(env: Env, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Whether the run has debug logging on (`RUNNER_DEBUG=1`).
pub fn runner_debug(env: Env) -> bool {
    var(env, "RUNNER_DEBUG").as_deref() == Some("1")
}

/// The job summary file (`GITHUB_STEP_SUMMARY`), when the runner gives one.
pub fn summary_file(env: Env) -> Option<PathBuf> {
    var(env, "GITHUB_STEP_SUMMARY").map(PathBuf::from)
}

/// Every secret the step may hold, for `::add-mask::` before anything is
/// printed. A key given inline is masked line by line, as the runner masks.
pub fn secrets(env: Env) -> Vec<String> {
    let mut found: Vec<String> = [
        input(env, "registry-password"),
        input(env, "github-token"),
        var(env, "GITHUB_TOKEN"),
        var(env, "COSIGN_PASSWORD"),
        var(env, "GITOPS_TOKEN"),
        input(env, "gitops-token"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(key) = input(env, "signing-key").filter(|k| k.starts_with("-----BEGIN")) {
        found.extend(key.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("-----")).map(str::to_owned));
    }
    found.dedup();
    found
}

/// The `signing-key` input: the key itself (a secret holding cosign.key), or a
/// path inside the workspace; opened with COSIGN_PASSWORD from the step's env.
fn signing_key(env: Env, workspace: &Path) -> Result<Option<crate::sign::keys::PrivateKey>, ActionSettingsError> {
    let Some(value) = input(env, "signing-key") else { return Ok(None) };
    let password = env("COSIGN_PASSWORD");
    let invalid = |e: crate::sign::keys::KeyError| ActionSettingsError::Invalid { name: "signing-key", message: e.to_string() };
    if value.starts_with("-----BEGIN") {
        return crate::sign::keys::PrivateKey::from_pem(&value, password.as_deref(), "the key in input signing-key")
            .map(Some)
            .map_err(invalid);
    }
    let (path, _) = workspace_path("signing-key", workspace, &value)?;
    crate::sign::keys::PrivateKey::from_file(&path, password.as_deref()).map(Some).map_err(invalid)
}

#[derive(Debug, thiserror::Error)]
pub enum ActionSettingsError {
    #[error("input {name}: is required: {hint}")]
    Missing { name: &'static str, hint: &'static str },
    // The cause is chained (#[source]) and printed by `{:#}`, not repeated here.
    #[error("input {name}")]
    Ident {
        name: &'static str,
        #[source]
        source: IdentError,
    },
    #[error("input {name}: {value:?} is not one of {allowed}")]
    Choice { name: &'static str, value: String, allowed: &'static str },
    #[error("input {name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("{var}: {message}")]
    Environment { var: &'static str, message: String },
    #[error("event payload (GITHUB_EVENT_PATH) of the {event} event: {message}")]
    Payload { event: String, message: String },
}

/// Where and how the result is reported on the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportTo {
    pub check: bool,
    pub status: bool,
}

/// Everything the GitHub API side needs.
#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub token: Option<Token>,
    /// The workflow run, for the check run's details and the status's target.
    pub run_url: Option<String>,
    pub check_name: String,
    pub status_context: String,
    pub report: ReportTo,
}

#[derive(Debug, Clone)]
pub struct ActionSettings {
    pub publish: PublishSettings,
    pub event: Event,
    /// The package directory relative to the repository root (the workspace),
    /// `/`-separated: annotation paths start here.
    pub package_repo_path: String,
    pub github: GitHubSettings,
    /// The head commit's date from a push payload: the committer-date fallback
    /// without an API call.
    pub payload_commit_date: Option<Created>,
    /// A pull request from another repository: its token is read-only.
    pub fork: bool,
    /// The GitOps records this run writes after publishing, if any.
    pub gitops: Option<gitops::GitOpsPlan>,
    /// Why configured GitOps records are not written on this run.
    pub gitops_notes: Vec<String>,
    /// The pull-request preview, when configured (spec section 13).
    pub preview: preview::PreviewPlan,
    pub debug: bool,
    pub output_file: Option<PathBuf>,
    pub summary_file: Option<PathBuf>,
}

impl ActionSettings {
    pub fn sha(&self) -> &GitSha {
        &self.publish.capsule.sha
    }
    pub fn push(&self) -> bool {
        !self.publish.dry_run
    }
}

fn parse<T: std::str::FromStr<Err = IdentError>>(name: &'static str, v: &str) -> Result<T, ActionSettingsError> {
    v.parse().map_err(|source| ActionSettingsError::Ident { name, source })
}

fn boolean(name: &'static str, v: &str) -> Result<bool, ActionSettingsError> {
    // The spellings YAML 1.2 core schema (and so the runner) treats as booleans.
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(ActionSettingsError::Choice { name, value: v.to_owned(), allowed: "true, false" }),
    }
}

/// `dir` (an input path) inside the workspace: the path to read, and the same
/// place relative to the workspace, `/`-separated and normalized.
fn workspace_path(name: &'static str, workspace: &Path, given: &str) -> Result<(PathBuf, String), ActionSettingsError> {
    let p = Path::new(given);
    let rel = if p.is_absolute() {
        p.strip_prefix(workspace).map_err(|_| ActionSettingsError::Invalid {
            name,
            message: format!(
                "{given} is outside the workspace {}; container actions see only the workspace, so give a path relative to it",
                workspace.display()
            ),
        })?
    } else {
        p
    };
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir if parts.pop().is_some() => {}
            _ => {
                return Err(ActionSettingsError::Invalid {
                    name,
                    message: format!("{given} leaves the workspace; give a path inside the repository, relative to its root"),
                })
            }
        }
    }
    let rel = if parts.is_empty() { ".".to_owned() } else { parts.join("/") };
    Ok((workspace.join(&rel), rel))
}

/// A file input (image-layout, sbom, provenance), relative to the workspace.
fn file_input(env: Env, name: &'static str, workspace: &Path) -> Option<PathBuf> {
    input(env, name).map(|v| workspace.join(v))
}

fn api_url(env: Env) -> Result<String, ActionSettingsError> {
    crate::github::api_url(var(env, "GITHUB_API_URL").as_deref())
        .map_err(|message| ActionSettingsError::Environment { var: "GITHUB_API_URL", message })
}

/// Resolves the inputs, the run's variables and the event payload (the text
/// of the file GITHUB_EVENT_PATH names, when there is one).
pub fn resolve(env: Env, payload_text: Option<&str>) -> Result<ActionSettings, ActionSettingsError> {
    let event_name = var(env, "GITHUB_EVENT_NAME").unwrap_or_default();
    let event = Event::parse(&event_name);
    let payload: Option<Value> = payload_text
        .map(|t| {
            serde_json::from_str(t)
                .map_err(|e| ActionSettingsError::Payload { event: event_name.clone(), message: format!("is not JSON: {e}") })
        })
        .transpose()?;
    let payload = payload.as_ref();

    let image: Repository = parse(
        "image",
        &input(env, "image").ok_or(ActionSettingsError::Missing {
            name: "image",
            hint: "set `image:` to the app image repository without a tag, e.g. ghcr.io/my-org/my-app",
        })?,
    )?;
    let capsule = match input(env, "capsule-repository") {
        Some(c) => parse("capsule-repository", &c)?,
        None => Repository::default_capsule_for(&image),
    };
    let workspace = PathBuf::from(var(env, "GITHUB_WORKSPACE").unwrap_or_else(|| ".".into()));
    let package_input = input(env, "package-path").ok_or(ActionSettingsError::Missing {
        name: "package-path",
        hint: "set `package-path:` to the chart (or kustomize) directory, relative to the repository root",
    })?;
    let (package_path, package_repo_path) = workspace_path("package-path", &workspace, &package_input)?;
    let kind_text = input(env, "package-kind").unwrap_or_else(|| "helm".into());
    let package_kind: PackageKind = kind_text.parse().map_err(|_| ActionSettingsError::Choice {
        name: "package-kind",
        value: kind_text.clone(),
        allowed: "helm, kustomize",
    })?;
    let on_conflict = match input(env, "on-conflict").as_deref() {
        None | Some("fail") => OnConflict::Fail,
        Some("overwrite") => OnConflict::Overwrite,
        Some(other) => return Err(ActionSettingsError::Choice { name: "on-conflict", value: other.into(), allowed: "fail, overwrite" }),
    };
    let push = match input(env, "push") {
        Some(v) => boolean("push", &v)?,
        // A pull request only builds and validates: its capsule would carry a
        // commit that may never be merged.
        None => !event.is_pull_request(),
    };
    let helm_layer = match input(env, "helm-layer") {
        Some(v) => boolean("helm-layer", &v)?,
        None => true,
    };
    let report = match input(env, "report").as_deref() {
        None | Some("both") => ReportTo { check: true, status: true },
        Some("check") => ReportTo { check: true, status: false },
        Some("status") => ReportTo { check: false, status: true },
        Some("none") => ReportTo { check: false, status: false },
        Some(other) => {
            return Err(ActionSettingsError::Choice { name: "report", value: other.into(), allowed: "check, status, both, none" })
        }
    };

    let repository = var(env, "GITHUB_REPOSITORY").ok_or(ActionSettingsError::Environment {
        var: "GITHUB_REPOSITORY",
        message: "is not set; the action must run inside a GitHub Actions job".into(),
    })?;
    let (owner, repo) =
        repository.split_once('/').filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/')).ok_or_else(|| {
            ActionSettingsError::Environment { var: "GITHUB_REPOSITORY", message: format!("{repository:?} is not <owner>/<repo>") }
        })?;
    let server_url = var(env, "GITHUB_SERVER_URL").unwrap_or_else(|| DEFAULT_SERVER_URL.into());
    let server_url = server_url.trim_end_matches('/');
    let source: SourceUrl = format!("{server_url}/{repository}")
        .parse()
        .map_err(|e: IdentError| ActionSettingsError::Environment { var: "GITHUB_SERVER_URL", message: e.to_string() })?;
    let run_url = var(env, "GITHUB_RUN_ID").map(|id| format!("{server_url}/{repository}/actions/runs/{id}"));

    let sha = resolve_sha(env, &event, payload)?;
    let token = input(env, "github-token").or_else(|| var(env, "GITHUB_TOKEN"));
    let credentials = RegistryCredentials {
        username: input(env, "registry-username").or_else(|| var(env, "GITHUB_ACTOR")),
        password: input(env, "registry-password").or_else(|| token.clone()),
        // The login goes to the capsule's registry only, as the CLI's does.
        hosts: vec![capsule.registry().to_owned()],
    };
    let payload_commit_date = if event == Event::Push { push_commit_date(payload, &sha) } else { None };
    let api_url = api_url(env)?;
    let (gitops, gitops_notes) = gitops::resolve(env, &event, payload, push, token.as_deref(), &api_url, run_url.as_deref())?;
    let fork = event.is_pull_request() && is_fork(payload);
    let preview = preview::resolve(env, &event, payload, fork, token.as_deref(), &workspace, package_kind)?;

    let capsule_settings = CapsuleSettings {
        sha,
        image,
        image_digest: None,
        capsule,
        source,
        package_kind,
        package_path,
        package_source_path: package_repo_path.clone(),
        created: None,
        sbom: file_input(env, "sbom", &workspace),
        provenance: file_input(env, "provenance", &workspace),
        unpacked: None,
        json: false,
        helm_layer,
    };
    Ok(ActionSettings {
        publish: PublishSettings {
            capsule: capsule_settings,
            credentials,
            image_layout: file_input(env, "image-layout", &workspace),
            on_conflict,
            dry_run: !push,
            // Many pull request workflows build the image without pushing it.
            allow_missing_image: !push && event.is_pull_request(),
            signing_key: signing_key(env, &workspace)?.map(std::sync::Arc::new),
        },
        fork,
        gitops,
        gitops_notes,
        preview,
        event,
        package_repo_path,
        github: GitHubSettings {
            api_url,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            token: token.map(Token::new),
            run_url,
            check_name: input(env, "check-name").unwrap_or_else(|| DEFAULT_CHECK_NAME.into()),
            status_context: input(env, "status-context").unwrap_or_else(|| DEFAULT_CHECK_NAME.into()),
            report,
        },
        payload_commit_date,
        debug: runner_debug(env),
        output_file: var(env, "GITHUB_OUTPUT").map(PathBuf::from),
        summary_file: summary_file(env),
    })
}

#[cfg(test)]
mod tests;
