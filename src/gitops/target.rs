//! Where GitOps records go, parsed once: the repository (`owner/name`), the
//! branch, directories inside the repository, and the commit author. Each
//! parser refuses what would leave the repository or confuse GitHub's URLs,
//! and says how to write it instead.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{value:?} is not a repository as owner/name (e.g. code-dot-org/k8s-gitops)")]
    Repository { value: String },
    #[error("{value:?} is not a usable branch name: {reason}")]
    Branch { value: String, reason: &'static str },
    #[error("{value:?}: {reason}; give a directory relative to the GitOps repository's root, e.g. warehouses/my-app/freight")]
    Path { value: String, reason: &'static str },
    #[error("{value:?} is not an author as `Name <email>`")]
    Author { value: String },
}

/// A GitHub repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl FromStr for RepoName {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError::Repository { value: s.to_owned() };
        let (owner, name) = s.trim().split_once('/').ok_or_else(bad)?;
        // GitHub's alphabet for both parts; anything else could change the URL.
        let ok = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok(owner) || !ok(name) || name == "." || name == ".." {
            return Err(bad());
        }
        Ok(Self { owner: owner.to_owned(), name: name.to_owned() })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A branch name as `git check-ref-format --branch` accepts it, minus what
/// would need escaping in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchName(String);

impl BranchName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BranchName {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim().strip_prefix("refs/heads/").unwrap_or(s.trim());
        let bad = |reason| TargetError::Branch { value: s.to_owned(), reason };
        if value.is_empty() {
            return Err(bad("it is empty"));
        }
        if value.starts_with('-') || value.starts_with('/') || value.ends_with('/') || value.ends_with('.') || value.ends_with(".lock") {
            return Err(bad("it may not start with '-' or '/', or end with '/', '.' or '.lock'"));
        }
        if value.contains("..") || value.contains("//") || value.contains("@{") || value.split('/').any(|p| p.starts_with('.')) {
            return Err(bad("git refuses '..', '//', '@{' and parts starting with '.'"));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'+' | b'=' | b',')) {
            return Err(bad("use letters, digits and - _ . / + = ,"));
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A directory inside the repository: `/`-separated, relative to its root,
/// normalized (no `.`, no empty parts, no trailing `/`), never `..` or `.git`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `self/rest`.
    pub fn join(&self, rest: &str) -> String {
        format!("{}/{rest}", self.0)
    }
}

impl FromStr for RepoPath {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TargetError::Path { value: s.to_owned(), reason };
        let value = s.trim();
        if value.starts_with('/') {
            return Err(bad("an absolute path"));
        }
        if value.contains('\\') || value.bytes().any(|b| b.is_ascii_control()) {
            return Err(bad("backslashes and control characters are not allowed"));
        }
        let mut parts = Vec::new();
        for part in value.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad("`..` leaves the repository")),
                p if p.eq_ignore_ascii_case(".git") => return Err(bad("`.git` is git's own directory")),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(bad("the repository root itself; records need a directory of their own"));
        }
        Ok(Self(parts.join("/")))
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who commits. The default is the identity Actions workflows commit as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Self { name: "github-actions[bot]".into(), email: "41898282+github-actions[bot]@users.noreply.github.com".into() }
    }
}

impl FromStr for Author {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError::Author { value: s.to_owned() };
        let (name, rest) = s.trim().split_once('<').ok_or_else(bad)?;
        let email = rest.strip_suffix('>').ok_or_else(bad)?;
        let (name, email) = (name.trim(), email.trim());
        if name.is_empty() || !email.contains('@') || email.contains(['<', '>']) || name.contains(['<', '>']) {
            return Err(bad());
        }
        Ok(Self { name: name.to_owned(), email: email.to_owned() })
    }
}

impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        let r: RepoName = "code-dot-org/k8s-gitops".parse().unwrap();
        assert_eq!((r.owner.as_str(), r.name.as_str()), ("code-dot-org", "k8s-gitops"));
        for bad in ["k8s-gitops", "a/b/c", "/b", "a/", "a/..", "a/b?x=1", "a b/c"] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        assert_eq!("main".parse::<BranchName>().unwrap().as_str(), "main");
        assert_eq!("refs/heads/stage/staging".parse::<BranchName>().unwrap().as_str(), "stage/staging");
        for bad in ["", "-x", "a..b", "a/", "x.lock", "a b", "a?b", "a#b", "a/.hidden", "a@{1}", "a%2Fb"] {
            assert!(bad.parse::<BranchName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_stay_inside_the_repository() {
        assert_eq!("warehouses/codeai/freight".parse::<RepoPath>().unwrap().as_str(), "warehouses/codeai/freight");
        assert_eq!("./warehouses//codeai/freight/".parse::<RepoPath>().unwrap().as_str(), "warehouses/codeai/freight");
        let err = "../other/freight".parse::<RepoPath>().unwrap_err().to_string();
        assert!(err.contains("`..` leaves the repository"), "{err}");
        for bad in ["a/../../b", "/abs", ".", "", "a/.git/x", "a\\b", "a\nb"] {
            assert!(bad.parse::<RepoPath>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn authors() {
        let a: Author = "Release Bot <release@example.com>".parse().unwrap();
        assert_eq!(a.to_string(), "Release Bot <release@example.com>");
        assert!("nobody".parse::<Author>().is_err());
        assert!("<x@y>".parse::<Author>().is_err());
        assert_eq!(Author::default().name, "github-actions[bot]");
    }
}
