//! The commit date for publish (spec section 5's last resort), from what the
//! action knows: the push payload when it names the commit, else the GitHub
//! API. It lives here, where the action wires the GitHub edge into the publish
//! command, so that neither of the two knows about the other.

use futures_util::FutureExt;

use crate::commands::publish::{BoxFuture, CommitDateSource};
use crate::core::ident::GitSha;
use crate::core::timestamp::Created;
use crate::github::client::OctocrabGitHub;

/// The committer date for publish: from the push payload when it names this
/// commit, else from the API.
pub struct GitHubCommitDates<'a> {
    pub api: Option<&'a OctocrabGitHub>,
    pub from_payload: Option<(GitSha, Created)>,
}

impl CommitDateSource for GitHubCommitDates<'_> {
    fn commit_date<'a>(&'a self, sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>> {
        async move {
            if let Some((known, date)) = &self.from_payload {
                if known == sha {
                    return Ok(Some(*date));
                }
            }
            match self.api {
                Some(api) => Ok(api.committer_date(sha).await?),
                None => Ok(None),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_push_payloads_date_is_taken_for_its_own_commit_only() {
        let pushed: GitSha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821".parse().unwrap();
        let other: GitSha = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let date = Created::from_unix(1_700_000_000, "x").unwrap();
        // No API: nothing but the payload can answer, and it answers only for its commit.
        let dates = GitHubCommitDates { api: None, from_payload: Some((pushed.clone(), date)) };
        assert_eq!(dates.commit_date(&pushed).await.unwrap(), Some(date));
        assert_eq!(dates.commit_date(&other).await.unwrap(), None);
    }
}
