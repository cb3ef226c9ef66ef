//! The GitOps inputs: which records go to which repository on this event,
//! and with which token. Nothing is required of a run that writes nothing
//! (a pull request, a push to a branch that is not a gate): its secrets may
//! not even be there.

use serde_json::Value;

use super::{input, var, ActionSettingsError, Event};
use crate::commands::gitops::settings::GitOpsTarget;
use crate::core::timestamp::Created;
use crate::github::Token;
use crate::gitops::target::{Author, BranchName, RepoName, RepoPath, TargetError};
use crate::settings::Env;

pub const DEFAULT_GATE_BRANCHES: &str = "staging,test,levelbuilder,production";

/// The gate record this push gets.
#[derive(Debug, Clone)]
pub struct GatePlan {
    pub dir: RepoPath,
    /// The branch pushed to.
    pub branch: BranchName,
    /// The push time from the payload; `None`: the time of writing.
    pub merged_at: Option<Created>,
}

/// What this run writes to the GitOps repository, in one commit.
#[derive(Debug, Clone)]
pub struct GitOpsPlan {
    pub target: GitOpsTarget,
    pub freight: Option<RepoPath>,
    pub gate: Option<GatePlan>,
}

fn invalid(name: &'static str) -> impl Fn(TargetError) -> ActionSettingsError {
    move |e| ActionSettingsError::Invalid { name, message: e.to_string() }
}

/// `repository.pushed_at` of a push payload: Unix seconds in push events
/// (an RFC 3339 string in other events' payloads).
fn pushed_at(payload: Option<&Value>) -> Option<Created> {
    match payload?.pointer("/repository/pushed_at")? {
        Value::Number(n) => Created::from_unix(n.as_i64()?, "repository.pushed_at").ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The plan, or `None` when this run writes nothing; with the reasons a
/// configured record is not written on this event, for the log.
pub fn resolve(
    env: Env,
    event: &Event,
    payload: Option<&Value>,
    publishing: bool,
    github_token: Option<&str>,
    api_url: &str,
    run_url: Option<&str>,
) -> Result<(Option<GitOpsPlan>, Vec<String>), ActionSettingsError> {
    let freight_path = input(env, "freight-path").map(|p| p.parse::<RepoPath>().map_err(invalid("freight-path"))).transpose()?;
    let gate_path = input(env, "gate-path").map(|p| p.parse::<RepoPath>().map_err(invalid("gate-path"))).transpose()?;
    let repository = input(env, "gitops-repository");
    if freight_path.is_none() && gate_path.is_none() {
        if repository.is_some() {
            return Err(ActionSettingsError::Invalid {
                name: "gitops-repository",
                message: "is set, but neither freight-path nor gate-path says what to write there".into(),
            });
        }
        return Ok((None, Vec::new()));
    }
    let mut notes = Vec::new();
    let freight = match freight_path {
        Some(dir) if publishing && !event.is_pull_request() => Some(dir),
        Some(_) => {
            notes.push("freight-path: nothing is exported on this run (a pull request or a dry run publishes no release)".to_owned());
            None
        }
        None => None,
    };
    let gate = match gate_path {
        Some(dir) => {
            let branches = input(env, "gate-branches").unwrap_or_else(|| DEFAULT_GATE_BRANCHES.into());
            let branches: Vec<BranchName> = branches
                .split([',', '\n'])
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(|b| b.parse().map_err(invalid("gate-branches")))
                .collect::<Result<_, _>>()?;
            let pushed = var(env, "GITHUB_REF").and_then(|r| r.strip_prefix("refs/heads/").and_then(|b| b.parse::<BranchName>().ok()));
            match pushed.filter(|b| *event == Event::Push && branches.contains(b)) {
                Some(_) if !publishing => {
                    notes.push("gate-path: no gate record on a dry run (push: false)".to_owned());
                    None
                }
                Some(branch) => Some(GatePlan { dir, branch, merged_at: pushed_at(payload) }),
                None => {
                    let shown: Vec<&str> = branches.iter().map(BranchName::as_str).collect();
                    notes.push(format!("gate-path: no gate record: only a push to one of {} writes one", shown.join(", ")));
                    None
                }
            }
        }
        None => None,
    };
    if freight.is_none() && gate.is_none() {
        return Ok((None, notes));
    }

    let repository: RepoName = repository
        .ok_or(ActionSettingsError::Missing {
            name: "gitops-repository",
            hint: "set it to the GitOps repository as owner/name, e.g. code-dot-org/k8s-gitops",
        })?
        .parse()
        .map_err(invalid("gitops-repository"))?;
    let same_repository = var(env, "GITHUB_REPOSITORY").is_some_and(|r| r.eq_ignore_ascii_case(&repository.to_string()));
    let token = input(env, "gitops-token")
        .or_else(|| var(env, "GITOPS_TOKEN"))
        .or_else(|| github_token.filter(|_| same_repository).map(str::to_owned))
        .ok_or(ActionSettingsError::Missing {
            name: "gitops-token",
            hint: "GITHUB_TOKEN cannot write to another repository: pass a fine-grained token (or GitHub App token) with \
                   Contents: read and write on the GitOps repository, e.g. gitops-token: ${{ secrets.GITOPS_TOKEN }}",
        })?;
    let target = GitOpsTarget {
        repository,
        branch: input(env, "gitops-branch").unwrap_or_else(|| "main".into()).parse().map_err(invalid("gitops-branch"))?,
        token: Token::new(token),
        api_url: api_url.to_owned(),
        author: input(env, "gitops-author").map(|a| a.parse::<Author>().map_err(invalid("gitops-author"))).transpose()?.unwrap_or_default(),
        run_url: run_url.map(str::to_owned),
    };
    Ok((Some(GitOpsPlan { target, freight, gate }), notes))
}
