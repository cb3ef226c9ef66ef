//! The preview's inputs (spec section 13): whether this run previews, with
//! which configuration, token and tools. A fork's pull request gets no
//! secrets, so without a gitops-token its preview is skipped, and says why.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{input, var, workspace_path, ActionSettingsError, Event};
use crate::core::package::PackageKind;
use crate::github::Token;
use crate::preview::config::{self, PreviewConfig};
use crate::preview::render::find_program;
use crate::preview::Tools;
use crate::settings::Env;

/// Where the complete diffs go, relative to the workspace: a path the
/// workflow's next steps (actions/upload-artifact) see as well. Not hidden:
/// upload-artifact leaves hidden files out by default.
pub const OUTPUT_DIR: &str = "release-capsule-preview";

#[derive(Debug, Clone)]
pub struct PreviewRun {
    pub config: PreviewConfig,
    /// The pull request's base commit, for its merge base.
    pub base: String,
    /// Reads the GitOps repository.
    pub gitops_token: Token,
    pub tools: Tools,
    pub output_dir: PathBuf,
    /// `output_dir` relative to the workspace: the output, and what reports show.
    pub output_shown: String,
}

#[derive(Debug, Clone)]
pub enum PreviewPlan {
    /// No preview-config.
    Off,
    /// Configured, but this event gets no preview: why, for the log.
    NotThisEvent(String),
    /// Configured for this pull request, but it cannot run: one neutral line that says why.
    Skipped(String),
    Run(Box<PreviewRun>),
}

fn invalid(message: impl std::fmt::Display) -> ActionSettingsError {
    ActionSettingsError::Invalid { name: "preview-config", message: message.to_string() }
}

/// The program that renders a package of `kind`, found now so that a
/// missing one is a bad input, not a failure halfway.
fn tools(env: Env, kind: PackageKind) -> Result<Tools, ActionSettingsError> {
    let hint = "the action image ships it; elsewhere set RELEASE_CAPSULE_HELM or RELEASE_CAPSULE_KUSTOMIZE to its path";
    Ok(match kind {
        PackageKind::Helm => Tools {
            helm: Some(find_program("helm", None, var(env, "RELEASE_CAPSULE_HELM"), var(env, "PATH"), hint).map_err(invalid)?),
            kustomize: None,
        },
        PackageKind::Kustomize => Tools {
            helm: None,
            kustomize: Some(
                find_program("kustomize", None, var(env, "RELEASE_CAPSULE_KUSTOMIZE"), var(env, "PATH"), hint).map_err(invalid)?,
            ),
        },
    })
}

/// The plan for this run. `fork`: the pull request comes from another repository.
pub fn resolve(
    env: Env,
    event: &Event,
    payload: Option<&Value>,
    fork: bool,
    github_token: Option<&str>,
    workspace: &Path,
    kind: PackageKind,
) -> Result<PreviewPlan, ActionSettingsError> {
    let Some(given) = input(env, "preview-config") else { return Ok(PreviewPlan::Off) };
    if *event != (Event::PullRequest { target: false }) {
        return Ok(PreviewPlan::NotThisEvent(format!(
            "preview-config: no preview on a {} event; only pull_request events get one",
            event.name()
        )));
    }
    let (path, shown) = workspace_path("preview-config", workspace, &given)?;
    let config = config::load(&path, &shown).map_err(invalid)?;
    let same_repository = var(env, "GITHUB_REPOSITORY").is_some_and(|r| r.eq_ignore_ascii_case(&config.gitops.repository.to_string()));
    let token = input(env, "gitops-token")
        .or_else(|| var(env, "GITOPS_TOKEN"))
        .or_else(|| github_token.filter(|_| same_repository).map(str::to_owned));
    let Some(token) = token else {
        if fork {
            return Ok(PreviewPlan::Skipped(format!(
                "Preview skipped: this pull request comes from a fork, and GitHub gives a fork's workflow no secrets, so there is \
                 no gitops-token to read the environments' values in {} with. The rest of the check ran as usual.",
                config.gitops.repository
            )));
        }
        return Err(ActionSettingsError::Missing {
            name: "gitops-token",
            hint: "the preview reads the environments' values from the GitOps repository: pass a token with Contents: read on it, \
                   e.g. gitops-token: ${{ secrets.GITOPS_TOKEN }}",
        });
    };
    let base = payload
        .and_then(|p| p.pointer("/pull_request/base/sha"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ActionSettingsError::Payload { event: event.name().into(), message: "has no pull_request.base.sha".into() })?;
    Ok(PreviewPlan::Run(Box::new(PreviewRun {
        config,
        base,
        gitops_token: Token::new(token),
        tools: tools(env, kind)?,
        output_dir: workspace.join(OUTPUT_DIR),
        output_shown: OUTPUT_DIR.to_owned(),
    })))
}
