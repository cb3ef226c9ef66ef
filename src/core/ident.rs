//! Parsed identities of a release: commit, digest, repository. Each newtype can
//! only hold a valid value, so the rest of the code never re-checks them.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("invalid commit sha {value:?}: expected 40 lowercase hex digits (the full `git rev-parse HEAD`)")]
    Sha { value: String },
    #[error("invalid digest {value:?}: expected `sha256:` followed by 64 lowercase hex digits")]
    Digest { value: String },
    #[error("invalid repository {value:?}: {reason}")]
    Repository { value: String, reason: &'static str },
    #[error("invalid repository URL {value:?}: expected https://<host>/<owner>/<repo>")]
    SourceUrl { value: String },
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A full 40-hex git commit id, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GitSha(String);

impl GitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The tag that names this release in every repository: `git-<sha>`
    /// (as a [`super::tag::Tag`], `Tag::from(&sha)`).
    pub fn tag(&self) -> String {
        super::tag::Tag::from(self).to_string()
    }
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl FromStr for GitSha {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_lower_hex(s, 40) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentError::Sha { value: s.to_owned() })
        }
    }
}

impl fmt::Display for GitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `sha256:<64 hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(format!("sha256:{}", hex(&hasher.finalize())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The 64 hex digits without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
    /// `sha256:1a2b3c4d5e6f` — for messages where the full digest is too long.
    pub fn short(&self) -> &str {
        &self.0[..19]
    }
}

impl FromStr for Digest {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(h) if is_lower_hex(h, 64) => Ok(Self(s.to_owned())),
            _ => Err(IdentError::Digest { value: s.to_owned() }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A repository without tag or digest: `registry[:port]/path`, lowercase, as the
/// OCI distribution spec allows (`ghcr.io/code-dot-org/code-dot-org`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The last path component, used as a package name (`code-dot-org`).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// `registry/path:tag`.
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{self}:{tag}")
    }
    /// `registry/path@digest`.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{self}@{digest}")
    }
    /// The default capsule repository for an image: `<image>-release-capsule`.
    pub fn default_capsule_for(image: &Repository) -> Repository {
        Repository { registry: image.registry.clone(), path: format!("{}-release-capsule", image.path) }
    }
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep: Option<u8> = None;
    let mut run = 0;
    for &ch in b {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            prev_sep = None;
            run = 0;
        } else if matches!(ch, b'.' | b'_' | b'-') {
            run += 1;
            match (prev_sep, ch) {
                (None, _) => {}
                (Some(b'-'), b'-') => {}
                (Some(b'_'), b'_') if run == 2 => {}
                _ => return false,
            }
            prev_sep = Some(ch);
        } else {
            return false;
        }
    }
    true
}

/// `host[:port]` by the distribution grammar: domain components of letters,
/// digits and inner hyphens, or an IPv6 address in brackets; a numeric port.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, after)) => {
                let ok = !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                (None, after.strip_prefix(':').or(if after.is_empty() { None } else { Some("") }))
            }
            None => return false,
        },
        None => match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        },
    };
    let component =
        |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !c.starts_with('-') && !c.ends_with('-');
    host.is_none_or(|h| h.split('.').all(component)) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl FromStr for Repository {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| IdentError::Repository { value: s.to_owned(), reason };
        if s.contains('@') {
            return Err(err("give the repository without a digest; the digest has its own flag"));
        }
        let (registry, path) = s.split_once('/').ok_or_else(|| err("expected <registry>/<path>, for example ghcr.io/my-org/my-app"))?;
        let looks_like_registry = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !looks_like_registry {
            return Err(err("the first component must be a registry host, for example ghcr.io"));
        }
        if path.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(err("give the repository without a tag; the tag is always git-<sha>"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) || registry.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository names must be lowercase (GHCR and the OCI spec reject uppercase); lowercase it, e.g. with ${GITHUB_REPOSITORY,,}"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(err("path components may hold only a-z, 0-9 and single '.', '_', '__' or '-' separators"));
        }
        if !valid_registry(registry) {
            return Err(err("the registry must be a host name or address, with an optional numeric port (host[:port])"));
        }
        if s.len() > 255 {
            return Err(err("a repository name has at most 255 characters"));
        }
        Ok(Self { registry: registry.to_owned(), path: path.to_owned() })
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// `https://<host>/<owner>/<repo>` — the source repository of the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl(String);

impl SourceUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SourceUrl {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdentError::SourceUrl { value: s.to_owned() };
        let rest = s.strip_prefix("https://").ok_or_else(err)?;
        let rest = rest.strip_suffix(".git").unwrap_or(rest).trim_end_matches('/');
        let parts: Vec<&str> = rest.split('/').collect();
        let ok_part = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if parts.len() < 3 || !parts.iter().all(ok_part) {
            return Err(err());
        }
        Ok(Self(format!("https://{rest}")))
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_must_be_full_lowercase_hex() {
        assert!("0123456789abcdef0123456789abcdef01234567".parse::<GitSha>().is_ok());
        for bad in ["abc1234", "0123456789ABCDEF0123456789abcdef01234567", "g123456789abcdef0123456789abcdef01234567", ""] {
            assert!(bad.parse::<GitSha>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_round_trips_and_hashes() {
        let d = Digest::of(b"{}");
        assert_eq!(d.as_str(), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_eq!(d.as_str().parse::<Digest>(), Ok(d.clone()));
        assert!("sha512:00".parse::<Digest>().is_err());
        assert!("sha256:44136FA355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".parse::<Digest>().is_err());
    }

    #[test]
    fn repository_rules() {
        let r: Repository = "ghcr.io/code-dot-org/code-dot-org".parse().unwrap();
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.name(), "code-dot-org");
        assert_eq!(Repository::default_capsule_for(&r).to_string(), "ghcr.io/code-dot-org/code-dot-org-release-capsule");
        assert!("127.0.0.1:5000/a/b".parse::<Repository>().is_ok());
        assert!("localhost:5000/a__b/c.d-e".parse::<Repository>().is_ok());
        assert!("[::1]:5000/a/b".parse::<Repository>().is_ok());
        assert!("my-registry.example.com:443/a/b".parse::<Repository>().is_ok());
        for bad in [
            "ghcr.io/Code-Dot-Org/app",
            "app",
            "library/app",
            "ghcr.io/a/b:tag",
            "ghcr.io/a/b@sha256:00",
            "ghcr.io/a/-b",
            "ghcr.io/a/b..c",
            "ghcr.io/a/../b",
            "ghcr.io/a/%2e%2e/b",
            "ghcr.io/a/b?x=1",
            "ghcr.io/a/b#x",
            "ghcr.io:abc/a/b",
            "ghcr.io:/a/b",
            "gh..io/a/b",
            "-ghcr.io/a/b",
            "[::1/a/b",
            "[::1]x/a/b",
            "127.0.0.1:5000:1/a/b",
        ] {
            assert!(bad.parse::<Repository>().is_err(), "{bad}");
        }
        assert!(format!("ghcr.io/{}", "a".repeat(250)).parse::<Repository>().is_err(), "over 255 characters");
    }

    #[test]
    fn source_url_is_https_owner_repo() {
        let u: SourceUrl = "https://github.com/code-dot-org/code-dot-org.git".parse().unwrap();
        assert_eq!(u.as_str(), "https://github.com/code-dot-org/code-dot-org");
        assert!("http://github.com/a/b".parse::<SourceUrl>().is_err());
        assert!("https://github.com/a".parse::<SourceUrl>().is_err());
    }
}
