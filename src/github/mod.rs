//! The GitHub API edge: check runs and commit statuses (and a commit's date),
//! and the Git Data API that GitOps records are written with. Flows are
//! written against small traits ([`ChecksApi`], [`git_data::GitData`]) so they
//! run against fakes in tests; [`client::OctocrabGitHub`] is the real one.

pub mod client;
pub mod git_data;
pub mod reads;
pub mod retry;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::core::ident::GitSha;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The API base (`GITHUB_API_URL`'s value, else api.github.com), checked: an
/// http(s) URL with a host. GitHub Enterprise Server's `/api/v3` is kept.
pub fn api_url(value: Option<&str>) -> Result<String, String> {
    let url = value.unwrap_or(DEFAULT_API_URL).trim().trim_end_matches('/').to_owned();
    let ok = url.parse::<http::Uri>().ok().is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        return Err(format!("{url:?} is not an http(s) URL such as https://api.github.com or https://ghe.example.com/api/v3"));
    }
    Ok(url)
}

/// The Checks API takes at most this many annotations per request.
pub const MAX_ANNOTATIONS_PER_REQUEST: usize = 50;
/// GitHub rejects longer commit status descriptions.
pub const MAX_STATUS_DESCRIPTION: usize = 140;
/// `output.summary` and `output.text` limit (characters).
pub const MAX_OUTPUT_TEXT: usize = 65_535;

/// A GitHub token. Its Debug never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Neutral,
    Failure,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckAnnotation {
    /// Relative to the repository root.
    pub path: String,
    pub start_line: usize,
    pub end_line: usize,
    pub annotation_level: AnnotationLevel,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    /// Shown below the summary; at most [`MAX_OUTPUT_TEXT`] characters too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<CheckAnnotation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunCreate {
    pub name: String,
    pub head_sha: String,
    /// Always `in_progress`: the run is completed by an update.
    pub status: &'static str,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub output: CheckOutput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<Conclusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub output: CheckOutput,
}

impl CheckRunUpdate {
    /// Annotations accumulate on every update, so sending one twice shows it twice.
    pub fn is_replayable(&self) -> bool {
        self.output.annotations.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitStatus {
    pub state: StatusState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    pub description: String,
    pub context: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401/403/404 that is not a rate limit: the token may not do this here
    /// (a fork's read-only token, missing `permissions:`).
    #[error("{operation}: not allowed ({status}: {message}); the job needs `permissions: {permission}: write` (a pull request from a fork only gets a read-only token)")]
    Forbidden { operation: &'static str, status: u16, message: String, permission: &'static str },
    #[error("{operation}: rate limited by GitHub ({message}); gave up after {attempts} attempt(s)")]
    RateLimited { operation: &'static str, message: String, attempts: u32 },
    #[error("{operation}: GitHub answered {status}: {message}")]
    Rejected { operation: &'static str, status: u16, message: String },
    #[error("{operation}: {message}")]
    Transport { operation: &'static str, message: String },
    #[error("{operation}: unexpected answer: {message}")]
    Unexpected { operation: &'static str, message: String },
}

impl GitHubError {
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }
}

/// What reporting needs from GitHub. Implementations retry what is safe to
/// retry themselves; an error returned is final.
pub trait ChecksApi: Send + Sync {
    /// Creates a check run; its id.
    fn create_check_run<'a>(&'a self, run: &'a CheckRunCreate) -> BoxFuture<'a, Result<u64, GitHubError>>;
    fn update_check_run<'a>(&'a self, id: u64, update: &'a CheckRunUpdate) -> BoxFuture<'a, Result<(), GitHubError>>;
    fn create_commit_status<'a>(&'a self, sha: &'a GitSha, status: &'a CommitStatus) -> BoxFuture<'a, Result<(), GitHubError>>;
}

/// `text` cut to at most `max` characters, with `…` when something was cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_serialize_as_the_api_expects() {
        let update = CheckRunUpdate {
            status: Some("completed"),
            conclusion: Some(Conclusion::Neutral),
            completed_at: Some("2026-01-01T00:00:00Z".into()),
            output: CheckOutput { title: "t".into(), summary: "s".into(), text: None, annotations: vec![] },
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"status":"completed","conclusion":"neutral","completed_at":"2026-01-01T00:00:00Z","output":{"title":"t","summary":"s"}}"#
        );
        assert!(update.is_replayable());
        let status = CommitStatus { state: StatusState::Success, target_url: None, description: "d".into(), context: "c".into() };
        assert_eq!(serde_json::to_string(&status).unwrap(), r#"{"state":"success","description":"d","context":"c"}"#);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        let long = "é".repeat(200);
        assert_eq!(truncate_chars(&long, 140).chars().count(), 140);
        assert_eq!(format!("{:?}", Token::new("ghs_x".into())), "Token(***)");
    }
}
