//! What may follow `/manifests/` in a registry URL: a [`Tag`] by the OCI
//! distribution grammar, or a [`Digest`]. Both can only hold valid values, so
//! a registry path built from a [`ManifestRef`] can never carry `/`, `..`,
//! `?`, `#` or a percent-escape (spec section 10).

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use super::ident::{Digest, GitSha};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid tag {value:?}: {reason}")]
pub struct TagError {
    pub value: String,
    pub reason: &'static str,
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (OCI distribution spec).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TagError { value: s.to_owned(), reason };
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(err("a tag cannot be empty"));
        }
        if b.len() > 128 {
            return Err(err("a tag has at most 128 characters"));
        }
        if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
            return Err(err("a tag starts with a letter, a digit or '_'"));
        }
        if !b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')) {
            return Err(err("a tag may hold only letters, digits, '_', '.' and '-'"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Tag {
    /// The tag cosign's tag-based discovery gives the signatures of `digest`:
    /// `sha256-<hex>.sig` (spec section 9).
    pub fn cosign_signature(digest: &Digest) -> Self {
        Self(format!("sha256-{}.sig", digest.hex()))
    }

    /// The claim register beside a tag being set to `digest`:
    /// `sha256-<hex>.claim` (spec section 7; `commands::publish::claim`).
    pub fn claim(digest: &Digest) -> Self {
        Self(format!("sha256-{}.claim", digest.hex()))
    }
}

/// The tag that names a release in every repository: `git-<sha>`.
impl From<&GitSha> for Tag {
    fn from(sha: &GitSha) -> Self {
        Self(format!("git-{sha}"))
    }
}

impl Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest is asked for by: a tag, or a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestRef<'a> {
    Tag(&'a Tag),
    Digest(&'a Digest),
}

impl ManifestRef<'_> {
    /// The digest asked for, when asked by digest: what the answer must hash to.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Tag(_) => None,
            Self::Digest(d) => Some(d),
        }
    }
}

impl<'a> From<&'a Tag> for ManifestRef<'a> {
    fn from(t: &'a Tag) -> Self {
        Self::Tag(t)
    }
}

impl<'a> From<&'a Digest> for ManifestRef<'a> {
    fn from(d: &'a Digest) -> Self {
        Self::Digest(d)
    }
}

impl fmt::Display for ManifestRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t.as_str()),
            Self::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oci_grammar_and_nothing_else() {
        for good in ["git-0123456789abcdef0123456789abcdef01234567", "v1.2.3", "_x", "A", &"t".repeat(128)] {
            assert_eq!(good.parse::<Tag>().unwrap().as_str(), good);
        }
        for bad in ["", ".hidden", "-x", "../../other/app/manifests/x", "a/b", "x?y", "x#y", "%2e%2e", "a:b", "a b", &"t".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
        let e = "a/b".parse::<Tag>().unwrap_err().to_string();
        assert_eq!(e, "invalid tag \"a/b\": a tag may hold only letters, digits, '_', '.' and '-'");
    }

    #[test]
    fn releases_and_references() {
        let sha: GitSha = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let tag = Tag::from(&sha);
        assert_eq!(tag.as_str(), sha.tag());
        let d = Digest::of(b"x");
        assert_eq!(ManifestRef::from(&tag).to_string(), sha.tag());
        assert_eq!(ManifestRef::from(&d).to_string(), d.as_str());
        assert_eq!(ManifestRef::from(&d).digest(), Some(&d));
        assert_eq!(ManifestRef::from(&tag).digest(), None);
        let sig = Tag::cosign_signature(&d);
        assert_eq!(sig.as_str().parse::<Tag>().as_ref(), Ok(&sig), "a valid tag");
    }
}
