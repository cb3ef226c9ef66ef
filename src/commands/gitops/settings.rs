//! The GitOps commands' flags and environment, resolved once.

use crate::cli::GitOpsArgs;
use crate::github::Token;
use crate::gitops::target::{Author, BranchName, RepoName, TargetError};
use crate::settings::Env;

#[derive(Debug, thiserror::Error)]
pub enum GitOpsSettingsError {
    #[error("{flag}")]
    Target {
        flag: &'static str,
        #[source]
        source: TargetError,
    },
    #[error(
        "GITOPS_TOKEN is not set: export a token that may write to {repo} (a fine-grained token or GitHub App token with \
         Contents: read and write on it; a classic token with the repo scope)"
    )]
    NoToken { repo: String },
    #[error("GITHUB_API_URL: {0}")]
    ApiUrl(String),
    #[error("{flag} {value:?}: {message}")]
    Invalid { flag: &'static str, value: String, message: String },
}

/// Where records go and who writes them.
#[derive(Debug, Clone)]
pub struct GitOpsTarget {
    pub repository: RepoName,
    pub branch: BranchName,
    pub token: Token,
    pub api_url: String,
    pub author: Author,
    pub run_url: Option<String>,
}

pub fn target<T: std::str::FromStr<Err = TargetError>>(flag: &'static str, value: &str) -> Result<T, GitOpsSettingsError> {
    value.parse().map_err(|source| GitOpsSettingsError::Target { flag, source })
}

impl GitOpsTarget {
    pub fn resolve(args: &GitOpsArgs, env: Env) -> Result<Self, GitOpsSettingsError> {
        let repository: RepoName = target("--gitops-repository", &args.gitops_repository)?;
        let token =
            env("GITOPS_TOKEN").filter(|t| !t.trim().is_empty()).ok_or(GitOpsSettingsError::NoToken { repo: repository.to_string() })?;
        Ok(Self {
            branch: target("--gitops-branch", &args.gitops_branch)?,
            token: Token::new(token.trim().to_owned()),
            api_url: crate::github::api_url(env("GITHUB_API_URL").as_deref()).map_err(GitOpsSettingsError::ApiUrl)?,
            author: args.commit_author.as_deref().map(|a| target("--commit-author", a)).transpose()?.unwrap_or_default(),
            run_url: args.run_url.clone(),
            repository,
        })
    }
}
