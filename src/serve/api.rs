//! The wire format of `POST /verify` (spec section 10): the request exactly as
//! code-dot-org's Kustomize stage sends it through Kargo's `http` step, parsed
//! once into a [`VerifyRequest`] of valid values, and the response those
//! stages read (`ok`, `reason`, `release.*`). Every string that reaches a
//! registry URL (repositories, tags, digests) is parsed here into its
//! validated type, so a bad one is a 400 naming the field before anything is
//! fetched.

use serde::{Deserialize, Serialize};

use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::tag::Tag;
use crate::core::verify::{Check, Checks};

/// What the stage asks: is this capsule the release of this image?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub image: Repository,
    /// The release tag, `git-<sha>`.
    pub sha: GitSha,
    /// The image digest the Freight holds, when sent.
    pub image_digest: Option<Digest>,
    pub capsule: Repository,
    pub capsule_tag: Option<Tag>,
    pub capsule_digest: Option<Digest>,
    /// What the stage parsed from the release.yaml it downloaded itself.
    pub release: Option<ClaimedRelease>,
}

/// The `release` block: six strings the stage read with `yaml-parse`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedRelease {
    pub git_commit: String,
    pub image_repo: String,
    pub image_tag: String,
    pub image_digest: String,
    pub package_kind: String,
    pub package_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    image: Option<RawImage>,
    capsule: Option<RawCapsule>,
    release: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawImage {
    #[serde(rename = "repoURL")]
    repo_url: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCapsule {
    #[serde(rename = "repoURL")]
    repo_url: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a body is not a request: the field and what is wrong with it (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadRequest {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> BadRequest {
    BadRequest { field: field.to_owned(), message: message.into() }
}

fn required(field: &str, value: Option<String>) -> Result<String, BadRequest> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(field, "is required")),
    }
}

fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl VerifyRequest {
    /// Parses a request body; every error names the field.
    pub fn parse(body: &[u8]) -> Result<Self, BadRequest> {
        let raw: RawRequest =
            serde_json::from_slice(body).map_err(|e| bad("body", format!("is not the JSON object spec section 10 describes: {e}")))?;
        let image = raw.image.ok_or_else(|| bad("image", "is required: {repoURL, tag, digest}"))?;
        let capsule = raw.capsule.ok_or_else(|| bad("capsule", "is required: {repoURL, tag} or {repoURL, digest}"))?;
        let repo = |field: &str, v: String| v.parse::<Repository>().map_err(|e| bad(field, e.to_string()));
        let digest = |field: &str, v: String| v.parse::<Digest>().map_err(|e| bad(field, e.to_string()));

        let image_repo = repo("image.repoURL", required("image.repoURL", image.repo_url)?)?;
        let tag = required("image.tag", image.tag)?;
        let sha = tag
            .strip_prefix("git-")
            .and_then(|s| s.parse::<GitSha>().ok())
            .ok_or_else(|| bad("image.tag", format!("{tag:?} is not a release tag, git-<40 hex digits>")))?;
        let image_digest = optional(image.digest).map(|d| digest("image.digest", d)).transpose()?;
        let capsule_repo = repo("capsule.repoURL", required("capsule.repoURL", capsule.repo_url)?)?;
        let capsule_tag = optional(capsule.tag).map(|t| t.parse::<Tag>().map_err(|e| bad("capsule.tag", e.to_string()))).transpose()?;
        let capsule_digest = optional(capsule.digest).map(|d| digest("capsule.digest", d)).transpose()?;
        if capsule_tag.is_none() && capsule_digest.is_none() {
            return Err(bad("capsule", "give tag, digest or both"));
        }
        let release = match raw.release {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<ClaimedRelease>(v).map_err(|e| {
                bad(
                    "release",
                    format!("{e}; send gitCommit, imageRepo, imageTag, imageDigest, packageKind and packagePath as strings, or no release"),
                )
            })?),
        };
        Ok(Self { image: image_repo, sha, image_digest, capsule: capsule_repo, capsule_tag, capsule_digest, release })
    }

    /// The release tag, `git-<sha>`: the image's, and the capsule's by default.
    pub fn tag(&self) -> Tag {
        Tag::from(&self.sha)
    }
}

/// The body of every answer to `POST /verify`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyResponse {
    pub ok: bool,
    /// One sentence; empty on success.
    pub reason: String,
    pub release: ReleaseFacts,
    pub capsule: CapsuleFacts,
    pub image: ImageFacts,
    pub failures: Vec<Failure>,
}

/// The verified release (empty strings unless `ok`): what the stages read.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseFacts {
    pub git_commit: String,
    pub package_kind: String,
    pub package_path: String,
}

/// The capsule as verified: download it by this digest.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CapsuleFacts {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub tag: String,
    pub digest: String,
}

/// The image, with the digest its tag resolved to during this request.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ImageFacts {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub tag: String,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl From<&Check> for Failure {
    fn from(c: &Check) -> Self {
        Self { field: c.name.clone(), expected: c.expected.clone(), actual: c.actual.clone() }
    }
}

impl VerifyResponse {
    /// A refusal before or outside verification (400, 403, 502, 503).
    pub fn refused(reason: String, failures: Vec<Failure>) -> Self {
        Self {
            ok: false,
            reason,
            release: ReleaseFacts::default(),
            capsule: CapsuleFacts::default(),
            image: ImageFacts::default(),
            failures,
        }
    }

    /// The failed checks as the answer's failures, and a reason naming the first.
    pub fn failed(checks: &Checks, capsule: CapsuleFacts, image: ImageFacts) -> Self {
        let failures: Vec<Failure> = checks.failed().map(Failure::from).collect();
        let reason = match checks.failed().next() {
            Some(first) if failures.len() == 1 => format!("verification failed: {first}"),
            Some(first) => format!("verification failed: {first} (and {} more, in failures)", failures.len() - 1),
            None => "verification failed".to_owned(),
        };
        Self { ok: false, reason, release: ReleaseFacts::default(), capsule, image, failures }
    }
}

/// Checks of the `release` block against the verified release.yaml: a stage
/// that parsed something other than what was verified is caught here.
pub fn check_claims(checks: &mut Checks, claimed: &ClaimedRelease, verified: &crate::core::release::ReleaseDoc) {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let pairs = [
        ("release.gitCommit", &claimed.git_commit, v(&verified.git_commit)),
        ("release.imageRepo", &claimed.image_repo, v(&verified.image.repo_url)),
        ("release.imageTag", &claimed.image_tag, v(&verified.image.tag)),
        ("release.imageDigest", &claimed.image_digest, v(&verified.image.digest)),
        ("release.packageKind", &claimed.package_kind, v(&verified.package.kind)),
        ("release.packagePath", &claimed.package_path, v(&verified.package.path)),
    ];
    for (name, claimed, verified) in pairs {
        // Expected is what the verified capsule says; actual what the stage sent.
        checks.that(name, claimed == &verified, &verified, claimed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn body(release: &str) -> String {
        format!(
            r#"{{"capsule":{{"repoURL":"ghcr.io/code-dot-org/codeai-release-capsule","tag":"git-{SHA}"}},"image":{{"digest":"sha256:{d}","repoURL":"ghcr.io/code-dot-org/code-dot-org","tag":"git-{SHA}"}}{release}}}"#,
            d = "a".repeat(64)
        )
    }

    #[test]
    fn the_kustomize_stage_body_and_the_small_form_parse() {
        let full = body(&format!(
            r#","release":{{"gitCommit":"{SHA}","imageDigest":"sha256:{d}","imageRepo":"ghcr.io/code-dot-org/code-dot-org","imageTag":"git-{SHA}","packageKind":"kustomize","packagePath":"package/kustomize"}}"#,
            d = "a".repeat(64)
        ));
        let r = VerifyRequest::parse(full.as_bytes()).unwrap();
        assert_eq!(r.tag().as_str(), format!("git-{SHA}"));
        assert_eq!(r.capsule.to_string(), "ghcr.io/code-dot-org/codeai-release-capsule");
        assert_eq!(r.release.unwrap().package_path, "package/kustomize");
        let small = VerifyRequest::parse(body("").as_bytes()).unwrap();
        assert!(small.release.is_none() && small.capsule_digest.is_none());
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            ("not json", "body"),
            ("[]", "body"),
            ("{}", "image"),
            (r#"{"image":{},"capsule":{}}"#, "image.repoURL"),
            (r#"{"image":{"repoURL":"ghcr.io/A/B","tag":"git-x"},"capsule":{}}"#, "image.repoURL"),
            (r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"latest"},"capsule":{}}"#, "image.tag"),
            (
                r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"git-0123456789abcdef0123456789abcdef01234567","digest":"md5:x"},"capsule":{}}"#,
                "image.digest",
            ),
            (
                r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"git-0123456789abcdef0123456789abcdef01234567"},"capsule":{"repoURL":"ghcr.io/a/c"}}"#,
                "capsule",
            ),
            (
                r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"git-0123456789abcdef0123456789abcdef01234567"},"capsule":{"repoURL":"ghcr.io/a/c","tag":"../../other/c/manifests/x"}}"#,
                "capsule.tag",
            ),
            (
                r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"git-0123456789abcdef0123456789abcdef01234567"},"capsule":{"repoURL":"ghcr.io/a/../c","tag":"x"}}"#,
                "capsule.repoURL",
            ),
            (
                r#"{"image":{"repoURL":"ghcr.io/a/b","tag":"git-0123456789abcdef0123456789abcdef01234567"},"capsule":{"repoURL":"ghcr.io/a/c","digest":"sha256:%2e%2e"}}"#,
                "capsule.digest",
            ),
        ];
        for (text, field) in cases {
            let e = VerifyRequest::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        let e = VerifyRequest::parse(body(r#","release":{"gitCommit":1}"#).as_bytes()).unwrap_err();
        assert_eq!(e.field, "release", "{e}");
    }
}
