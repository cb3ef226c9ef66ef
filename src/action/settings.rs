//! The action's inputs, resolved once. The runner hands a container action
//! its inputs as `INPUT_<NAME>` variables (upper-cased, spaces to `_`, hyphens
//! kept: `INPUT_PACKAGE-PATH`) and an empty string for an input nobody set;
//! the run's facts come as `GITHUB_*` variables and the event payload.
//! [`resolve`] is a pure function of those: everything after it holds
//! parsed values only.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::cli::OnConflict;
use crate::core::ident::{GitSha, IdentError, Repository, SourceUrl};
use crate::core::package::PackageKind;
use crate::core::timestamp::Created;
use crate::github::Token;
use crate::settings::{CapsuleSettings, Env, PublishSettings, RegistryCredentials};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
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

/// The event that started the workflow, as far as the action cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    PullRequest { target: bool },
    WorkflowDispatch,
    Other(String),
}

impl Event {
    fn parse(name: &str) -> Self {
        match name {
            "push" => Self::Push,
            "pull_request" => Self::PullRequest { target: false },
            "pull_request_target" => Self::PullRequest { target: true },
            "workflow_dispatch" => Self::WorkflowDispatch,
            other => Self::Other(other.to_owned()),
        }
    }
    /// The event's name, as GITHUB_EVENT_NAME gave it.
    pub fn name(&self) -> &str {
        match self {
            Self::Push => "push",
            Self::PullRequest { target: false } => "pull_request",
            Self::PullRequest { target: true } => "pull_request_target",
            Self::WorkflowDispatch => "workflow_dispatch",
            Self::Other(name) => name,
        }
    }
    pub fn is_pull_request(&self) -> bool {
        matches!(self, Self::PullRequest { .. })
    }
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

/// The commit the release is named after: the `sha` input when given, else
/// what the event means by "this commit".
fn resolve_sha(env: Env, event: &Event, payload: Option<&Value>) -> Result<GitSha, ActionSettingsError> {
    if let Some(sha) = input(env, "sha") {
        return parse("sha", &sha);
    }
    let from_env = |why: &str| -> Result<GitSha, ActionSettingsError> {
        let sha = var(env, "GITHUB_SHA").ok_or_else(|| ActionSettingsError::Environment {
            var: "GITHUB_SHA",
            message: format!("is not set, so the commit is unknown ({why}); pass the commit with the `sha` input"),
        })?;
        sha.parse().map_err(|e: IdentError| ActionSettingsError::Environment { var: "GITHUB_SHA", message: e.to_string() })
    };
    let sha = match event {
        Event::PullRequest { .. } => {
            // The head of the pull request, not GITHUB_SHA: that is the merge
            // commit (or, for pull_request_target, the base branch).
            let head = payload.and_then(|p| p.pointer("/pull_request/head/sha")).and_then(Value::as_str).ok_or_else(|| {
                ActionSettingsError::Payload { event: event.name().into(), message: "has no pull_request.head.sha".into() }
            })?;
            head.parse().map_err(|e: IdentError| ActionSettingsError::Payload {
                event: event.name().into(),
                message: format!("pull_request.head.sha: {e}"),
            })?
        }
        Event::Push | Event::WorkflowDispatch => from_env(&format!("{} event", event.name()))?,
        Event::Other(name) => from_env(name)?,
    };
    if sha.as_str().bytes().all(|b| b == b'0') {
        return Err(ActionSettingsError::Environment {
            var: "GITHUB_SHA",
            message: "is all zeros (a push that deleted the branch); there is no commit to release".into(),
        });
    }
    Ok(sha)
}

/// `head_commit.timestamp` of a push payload, when the head commit is `sha`.
fn push_commit_date(payload: Option<&Value>, sha: &GitSha) -> Option<Created> {
    let head = payload?.get("head_commit")?;
    (head.get("id")?.as_str()? == sha.as_str()).then_some(())?;
    head.get("timestamp")?.as_str()?.parse().ok()
}

fn is_fork(payload: Option<&Value>) -> bool {
    let full_name = |ptr: &str| payload.and_then(|p| p.pointer(ptr)).and_then(Value::as_str).map(str::to_ascii_lowercase);
    match (full_name("/pull_request/head/repo/full_name"), full_name("/repository/full_name")) {
        (Some(head), Some(base)) => head != base,
        // A deleted fork has head.repo null: still not this repository.
        (None, Some(_)) => payload.and_then(|p| p.pointer("/pull_request/head/repo")).is_some_and(Value::is_null),
        _ => false,
    }
}

fn api_url(env: Env) -> Result<String, ActionSettingsError> {
    let url = var(env, "GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let url = url.trim_end_matches('/').to_owned();
    let ok = url.parse::<http::Uri>().ok().is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        return Err(ActionSettingsError::Environment {
            var: "GITHUB_API_URL",
            message: format!("{url:?} is not an http(s) URL such as https://api.github.com or https://ghe.example.com/api/v3"),
        });
    }
    Ok(url)
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
    };
    let payload_commit_date = if event == Event::Push { push_commit_date(payload, &sha) } else { None };

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
        fork: event.is_pull_request() && is_fork(payload),
        event,
        package_repo_path,
        github: GitHubSettings {
            api_url: api_url(env)?,
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
mod tests {
    use std::collections::HashMap;

    use super::*;

    const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/github-api/events");
    const MERGE_SHA: &str = "9f2c1e0d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

    fn payload(name: &str) -> String {
        std::fs::read_to_string(format!("{EVENTS}/{name}.json")).expect("shared event payloads beside the checkout")
    }

    /// The environment the runner gives the container for `event`, with the
    /// action's inputs as the runner names them. Unset inputs are "" as on a real runner.
    fn runner_env(event: &str, inputs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_SHA", MERGE_SHA),
            ("GITHUB_REPOSITORY", "codertocat/hello-world"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_API_URL", "https://api.github.com"),
            ("GITHUB_RUN_ID", "1234"),
            ("GITHUB_WORKSPACE", "/github/workspace"),
            ("GITHUB_ACTOR", "octocat"),
            ("GITHUB_OUTPUT", "/github/file_commands/set_output_1"),
            ("GITHUB_STEP_SUMMARY", "/github/file_commands/step_summary_1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for name in [
            "image",
            "capsule-repository",
            "package-path",
            "package-kind",
            "sha",
            "image-layout",
            "sbom",
            "provenance",
            "registry-username",
            "registry-password",
            "github-token",
            "push",
            "on-conflict",
            "check-name",
            "status-context",
            "report",
        ] {
            env.insert(input_var(name), String::new());
        }
        env.insert("INPUT_IMAGE".into(), "ghcr.io/codertocat/hello-world".into());
        env.insert("INPUT_PACKAGE-PATH".into(), "charts/hello".into());
        env.insert("INPUT_GITHUB-TOKEN".into(), "ghs_secret".into());
        for (k, v) in inputs {
            env.insert(input_var(k), (*v).to_owned());
        }
        env
    }

    /// The error as main prints it: the message, then its causes.
    fn chain(e: ActionSettingsError) -> String {
        format!("{:#}", anyhow::Error::new(e))
    }

    fn resolve_with(env: &HashMap<String, String>, payload_text: Option<&str>) -> Result<ActionSettings, ActionSettingsError> {
        let get = |k: &str| env.get(k).cloned();
        resolve(&get, payload_text)
    }

    fn event(name: &str, inputs: &[(&str, &str)]) -> Result<ActionSettings, ActionSettingsError> {
        resolve_with(&runner_env(name, inputs), Some(&payload(name)))
    }

    #[test]
    fn input_names_follow_the_runner() {
        assert_eq!(input_var("package-path"), "INPUT_PACKAGE-PATH");
        assert_eq!(input_var("capsule-repository"), "INPUT_CAPSULE-REPOSITORY");
        assert_eq!(input_var("My input"), "INPUT_MY_INPUT");
        let env = |k: &str| (k == "INPUT_PUSH").then(|| "  ".to_owned());
        assert_eq!(input(&env, "push"), None, "an empty input is unset");
    }

    #[test]
    fn push_uses_github_sha_and_defaults() {
        let mut env = runner_env("push", &[]);
        let text = payload("push");
        let after = serde_json::from_str::<Value>(&text).unwrap()["after"].as_str().unwrap().to_owned();
        env.insert("GITHUB_SHA".into(), after.clone());
        let s = resolve_with(&env, Some(&text)).unwrap();
        assert_eq!(s.sha().as_str(), after);
        assert!(s.push());
        assert_eq!(s.publish.capsule.capsule.to_string(), "ghcr.io/codertocat/hello-world-release-capsule");
        assert_eq!(s.publish.capsule.package_kind, PackageKind::Helm);
        assert_eq!(s.publish.capsule.package_path, Path::new("/github/workspace/charts/hello"));
        assert_eq!(s.package_repo_path, "charts/hello");
        assert_eq!(s.publish.capsule.source.as_str(), "https://github.com/codertocat/hello-world");
        assert_eq!(s.publish.on_conflict, OnConflict::Fail);
        assert_eq!(s.github.report, ReportTo { check: true, status: true });
        assert_eq!(s.github.check_name, "release-capsule");
        assert_eq!(s.github.status_context, "release-capsule");
        assert_eq!(s.github.run_url.as_deref(), Some("https://github.com/codertocat/hello-world/actions/runs/1234"));
        assert_eq!((s.github.owner.as_str(), s.github.repo.as_str()), ("codertocat", "hello-world"));
        // The registry logs in as the actor with the job's token.
        assert_eq!(s.publish.credentials.username.as_deref(), Some("octocat"));
        assert_eq!(s.publish.credentials.password.as_deref(), Some("ghs_secret"));
        // head_commit.timestamp of the real payload, "2019-05-15T15:19:25Z" in the fixture.
        assert_eq!(s.payload_commit_date.unwrap().to_string(), "2019-05-15T15:19:25Z");
        assert!(!s.fork && !s.debug);
        // The push payload's head commit is not the merge sha: no date from it.
        let s = event("push", &[]).unwrap();
        assert_eq!(s.sha().as_str(), MERGE_SHA);
        assert_eq!(s.payload_commit_date, None);
    }

    #[test]
    fn pull_request_uses_the_head_sha_not_the_merge_commit() {
        for name in ["pull_request", "pull_request_target"] {
            let mut env = runner_env(name, &[]);
            env.insert("GITHUB_EVENT_NAME".into(), name.into());
            let s = resolve_with(&env, Some(&payload("pull_request"))).unwrap();
            assert_eq!(s.sha().as_str(), "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "{name}");
            assert_ne!(s.sha().as_str(), MERGE_SHA);
            assert!(!s.push(), "pull requests are a dry run by default");
            assert!(!s.fork, "the fixture's head repo is the base repo");
        }
        let s = event("pull_request", &[("push", "true")]).unwrap();
        assert!(s.push(), "an explicit push input wins");
    }

    #[test]
    fn fork_pull_request_is_recognized() {
        let mut p: Value = serde_json::from_str(&payload("pull_request")).unwrap();
        p["pull_request"]["head"]["repo"]["full_name"] = "someone/hello-world".into();
        let s = resolve_with(&runner_env("pull_request", &[]), Some(&p.to_string())).unwrap();
        assert!(s.fork);
    }

    #[test]
    fn workflow_dispatch_republishes_the_sha_input() {
        let old = "0123456789abcdef0123456789abcdef01234567";
        let s = event("workflow_dispatch", &[("sha", old)]).unwrap();
        assert_eq!(s.sha().as_str(), old);
        assert!(s.push());
        let s = event("workflow_dispatch", &[]).unwrap();
        assert_eq!(s.sha().as_str(), MERGE_SHA);
    }

    #[test]
    fn other_events_and_missing_payloads() {
        let mut env = runner_env("schedule", &[]);
        env.insert("GITHUB_EVENT_NAME".into(), "schedule".into());
        assert_eq!(resolve_with(&env, None).unwrap().sha().as_str(), MERGE_SHA);
        let e = chain(resolve_with(&runner_env("pull_request", &[]), None).unwrap_err());
        assert_eq!(e, "event payload (GITHUB_EVENT_PATH) of the pull_request event: has no pull_request.head.sha");
        let e = chain(resolve_with(&runner_env("pull_request", &[]), Some("{not json")).unwrap_err());
        assert!(e.contains("is not JSON"), "{e}");
    }

    #[test]
    fn bad_or_missing_sha_is_a_clear_error() {
        let e = chain(event("workflow_dispatch", &[("sha", "abc1234")]).unwrap_err());
        assert!(e.starts_with("input sha: invalid commit sha \"abc1234\": expected 40 lowercase hex"), "{e}");
        let mut env = runner_env("push", &[]);
        env.remove("GITHUB_SHA");
        let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
        assert!(e.starts_with("GITHUB_SHA: is not set"), "{e}");
        env.insert("GITHUB_SHA".into(), "0".repeat(40));
        let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
        assert!(e.contains("deleted the branch"), "{e}");
        let mut p: Value = serde_json::from_str(&payload("pull_request")).unwrap();
        p["pull_request"]["head"]["sha"] = "HEAD".into();
        let e = chain(resolve_with(&runner_env("pull_request", &[]), Some(&p.to_string())).unwrap_err());
        assert!(e.contains("pull_request.head.sha: invalid commit sha \"HEAD\""), "{e}");
    }

    #[test]
    fn input_errors_name_the_input() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("image", "")], "input image: is required"),
            (&[("image", "ghcr.io/Acme/App")], "input image: invalid repository"),
            (&[("package-path", "")], "input package-path: is required"),
            (&[("package-path", "../elsewhere")], "input package-path: ../elsewhere leaves the workspace"),
            (&[("package-path", "/tmp/chart")], "input package-path: /tmp/chart is outside the workspace"),
            (&[("package-kind", "kustomise")], "input package-kind: \"kustomise\" is not one of helm, kustomize"),
            (&[("push", "yes")], "input push: \"yes\" is not one of true, false"),
            (&[("on-conflict", "replace")], "input on-conflict: \"replace\" is not one of fail, overwrite"),
            (&[("report", "all")], "input report: \"all\" is not one of check, status, both, none"),
            (&[("capsule-repository", "ghcr.io/a/b:latest")], "input capsule-repository: invalid repository"),
        ];
        for (inputs, expected) in cases {
            let e = chain(event("push", inputs).unwrap_err());
            assert!(e.starts_with(expected), "{inputs:?}: {e}");
            assert_eq!(e.matches(expected.split(": ").nth(1).unwrap_or(expected)).count(), 1, "said twice: {e}");
        }
    }

    #[test]
    fn inputs_override_defaults() {
        let s = event(
            "push",
            &[
                ("capsule-repository", "ghcr.io/codertocat/capsules"),
                ("package-path", "/github/workspace/./deploy/../deploy/kustomize/"),
                ("package-kind", "kustomize"),
                ("image-layout", "out/image.tar"),
                ("sbom", "sbom.spdx.json"),
                ("push", "False"),
                ("on-conflict", "overwrite"),
                ("check-name", "capsule"),
                ("status-context", "ci/capsule"),
                ("report", "status"),
                ("registry-username", "bot"),
                ("registry-password", "pat_registry"),
            ],
        )
        .unwrap();
        assert_eq!(s.publish.capsule.capsule.to_string(), "ghcr.io/codertocat/capsules");
        assert_eq!(s.package_repo_path, "deploy/kustomize");
        assert_eq!(s.publish.capsule.package_source_path, "deploy/kustomize");
        assert_eq!(s.publish.capsule.package_kind, PackageKind::Kustomize);
        assert_eq!(s.publish.image_layout.as_deref(), Some(Path::new("/github/workspace/out/image.tar")));
        assert_eq!(s.publish.capsule.sbom.as_deref(), Some(Path::new("/github/workspace/sbom.spdx.json")));
        assert!(!s.push());
        assert_eq!(s.publish.on_conflict, OnConflict::Overwrite);
        assert_eq!(s.github.report, ReportTo { check: false, status: true });
        assert_eq!((s.github.check_name.as_str(), s.github.status_context.as_str()), ("capsule", "ci/capsule"));
        assert_eq!(s.publish.credentials.username.as_deref(), Some("bot"));
        assert_eq!(s.publish.credentials.password.as_deref(), Some("pat_registry"));
    }

    #[test]
    fn run_facts_from_the_environment() {
        let mut env = runner_env("push", &[]);
        env.insert("GITHUB_API_URL".into(), "https://ghe.example.com/api/v3/".into());
        env.insert("GITHUB_SERVER_URL".into(), "https://ghe.example.com".into());
        env.insert("RUNNER_DEBUG".into(), "1".into());
        env.insert("INPUT_GITHUB-TOKEN".into(), String::new());
        env.insert("GITHUB_TOKEN".into(), "ghs_from_env".into());
        let s = resolve_with(&env, Some(&payload("push"))).unwrap();
        assert_eq!(s.github.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(s.publish.capsule.source.as_str(), "https://ghe.example.com/codertocat/hello-world");
        assert!(s.debug);
        assert_eq!(s.github.token.as_ref().map(Token::expose), Some("ghs_from_env"));
        env.insert("GITHUB_API_URL".into(), "api.github.com".into());
        let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
        assert!(e.starts_with("GITHUB_API_URL: \"api.github.com\" is not an http(s) URL"), "{e}");
        env.remove("GITHUB_REPOSITORY");
        let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
        assert!(e.starts_with("GITHUB_REPOSITORY: is not set"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut env = runner_env("push", &[("registry-password", "pat_registry_value")]);
        env.insert("GITHUB_TOKEN".into(), "ghs_env_token".into());
        let s = resolve_with(&env, Some(&payload("push"))).unwrap();
        let shown = format!("{s:?}");
        for secret in ["pat_registry_value", "ghs_secret", "ghs_env_token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let get = |k: &str| env.get(k).cloned();
        assert_eq!(secrets(&get), vec!["pat_registry_value", "ghs_secret", "ghs_env_token"]);
    }
}
