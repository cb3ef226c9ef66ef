//! The event that started the workflow, and what it says: the commit the
//! release is named after, the push's dates, whether a pull request comes
//! from a fork.

use serde_json::Value;

use super::{input, parse, var, ActionSettingsError};
use crate::core::ident::{GitSha, IdentError};
use crate::core::timestamp::Created;
use crate::settings::Env;

/// The event that started the workflow, as far as the action cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    PullRequest { target: bool },
    WorkflowDispatch,
    Other(String),
}

impl Event {
    pub(super) fn parse(name: &str) -> Self {
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

/// The commit the release is named after: the `sha` input when given, else
/// what the event means by "this commit".
pub(super) fn resolve_sha(env: Env, event: &Event, payload: Option<&Value>) -> Result<GitSha, ActionSettingsError> {
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
pub(super) fn push_commit_date(payload: Option<&Value>, sha: &GitSha) -> Option<Created> {
    let head = payload?.get("head_commit")?;
    (head.get("id")?.as_str()? == sha.as_str()).then_some(())?;
    head.get("timestamp")?.as_str()?.parse().ok()
}

pub(super) fn is_fork(payload: Option<&Value>) -> bool {
    let full_name = |ptr: &str| payload.and_then(|p| p.pointer(ptr)).and_then(Value::as_str).map(str::to_ascii_lowercase);
    match (full_name("/pull_request/head/repo/full_name"), full_name("/repository/full_name")) {
        (Some(head), Some(base)) => head != base,
        // A deleted fork has head.repo null: still not this repository.
        (None, Some(_)) => payload.and_then(|p| p.pointer("/pull_request/head/repo")).is_some_and(Value::is_null),
        _ => false,
    }
}
