//! The repositories the verifier may contact. A request naming anything else
//! is refused (403) before any request leaves the service: without this, a
//! caller could make the service fetch from any host its network reaches.

use crate::core::ident::Repository;

/// One allowed repository, or every repository under a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `ghcr.io/code-dot-org/*`: the prefix `ghcr.io/code-dot-org/`.
    Under(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<Pattern>);

#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("--allow is required: name the repositories the service may fetch, e.g. --allow 'ghcr.io/my-org/*'")]
    Empty,
    #[error("--allow {0:?}: {1}; use host/path for one repository or host/path/* for every repository under a path")]
    Invalid(String, &'static str),
}

impl AllowList {
    pub fn parse(patterns: &[String]) -> Result<Self, AllowError> {
        if patterns.is_empty() {
            return Err(AllowError::Empty);
        }
        let mut out = Vec::new();
        for raw in patterns {
            let p = raw.trim();
            let invalid = |why| AllowError::Invalid(raw.clone(), why);
            if p.contains("://") {
                return Err(invalid("give a repository, not a URL"));
            }
            if let Some(prefix) = p.strip_suffix("/*") {
                if prefix.contains('*') {
                    return Err(invalid("only a trailing /* is a wildcard"));
                }
                // The host and at least a first path segment: "ghcr.io/*" would allow a whole registry.
                prefix.parse::<Repository>().map_err(|_| invalid("the part before /* is not a repository path"))?;
                out.push(Pattern::Under(format!("{prefix}/")));
            } else {
                if p.contains('*') {
                    return Err(invalid("only a trailing /* is a wildcard"));
                }
                let repo: Repository = p.parse().map_err(|_| invalid("not a repository (lowercase host/path)"))?;
                out.push(Pattern::Exact(repo.to_string()));
            }
        }
        Ok(Self(out))
    }

    pub fn allows(&self, repo: &Repository) -> bool {
        let name = repo.to_string();
        self.0.iter().any(|p| match p {
            Pattern::Exact(e) => *e == name,
            Pattern::Under(prefix) => name.starts_with(prefix.as_str()),
        })
    }

    /// The patterns as given, for the start-up log line.
    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|p| match p {
                Pattern::Exact(e) => e.clone(),
                Pattern::Under(prefix) => format!("{prefix}*"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        s.parse().unwrap()
    }

    #[test]
    fn exact_names_and_trailing_wildcards() {
        let allow = AllowList::parse(&["ghcr.io/code-dot-org/*".into(), "127.0.0.1:5000/acme/app".into()]).unwrap();
        assert!(allow.allows(&repo("ghcr.io/code-dot-org/code-dot-org")));
        assert!(allow.allows(&repo("ghcr.io/code-dot-org/nested/capsule")));
        assert!(allow.allows(&repo("127.0.0.1:5000/acme/app")));
        for denied in ["ghcr.io/code-dot-org-evil/x", "ghcr.io/other/app", "127.0.0.1:5000/acme/app2", "127.0.0.1:5001/acme/app"] {
            assert!(!allow.allows(&repo(denied)), "{denied}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_at_start() {
        assert!(matches!(AllowList::parse(&[]), Err(AllowError::Empty)));
        for bad in ["https://ghcr.io/acme/*", "ghcr.io/*/app", "ghcr.io/acme/app*", "GHCR.io/Acme/*", "*"] {
            assert!(AllowList::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(AllowList::parse(&["ghcr.io/acme/*".into()]).unwrap().describe(), ["ghcr.io/acme/*"]);
    }
}
