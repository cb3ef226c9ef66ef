//! A full image reference as users type it: `<repo>:<tag>`, `<repo>@<digest>`
//! or both. The repository part is a [`Repository`]; tag and digest are kept
//! apart so a verifier knows which one the user vouched for.

use std::fmt;
use std::str::FromStr;

use super::ident::{Digest, IdentError, Repository};
use super::tag::{Tag, TagError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {value:?}: {reason}")]
    Invalid { value: String, reason: &'static str },
    #[error("invalid reference {value:?}: {source}")]
    Part {
        value: String,
        #[source]
        source: IdentError,
    },
    #[error("invalid reference {value:?}: {source}")]
    Tag {
        value: String,
        #[source]
        source: TagError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repo: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ReferenceError::Invalid { value: s.to_owned(), reason };
        let part = |source| ReferenceError::Part { value: s.to_owned(), source };
        let (name, digest) = match s.split_once('@') {
            Some((name, d)) => (name, Some(d.parse::<Digest>().map_err(part)?)),
            None => (s, None),
        };
        // A tag's colon comes after the last '/', a registry port's before it.
        let last_slash = name.rfind('/').unwrap_or(0);
        let (repo, tag) = match name[last_slash..].find(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        let tag = tag.map(|t| t.parse::<Tag>().map_err(|source| ReferenceError::Tag { value: s.to_owned(), source })).transpose()?;
        if tag.is_none() && digest.is_none() {
            return Err(invalid("expected <repository>:<tag> or <repository>@sha256:<hex>"));
        }
        Ok(Self { repo: repo.parse().map_err(part)?, tag, digest })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_digests_and_ports() {
        let d = Digest::of(b"x");
        let r: Reference = "127.0.0.1:5000/acme/app:git-abc".parse().unwrap();
        assert_eq!((r.repo.to_string().as_str(), r.tag.as_deref(), r.digest.as_ref()), ("127.0.0.1:5000/acme/app", Some("git-abc"), None));
        let r: Reference = format!("ghcr.io/acme/app@{d}").parse().unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_ref()), (None, Some(&d)));
        let r: Reference = format!("localhost:5000/app:v1@{d}").parse().unwrap();
        assert_eq!((r.repo.to_string().as_str(), r.tag.as_deref(), r.digest.as_ref()), ("localhost:5000/app", Some("v1"), Some(&d)));
        assert_eq!(r.to_string(), format!("localhost:5000/app:v1@{d}"));
        for bad in [
            "ghcr.io/acme/app",
            "127.0.0.1:5000/acme/app",
            "ghcr.io/acme/app:",
            "ghcr.io/acme/app:-x",
            "ghcr.io/acme/app@sha256:00",
            "app:v1",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
