//! The files a GitOps repository holds for a release, as text: `freight.yaml`
//! (spec section 11) and the legacy-gitflow gate record (section 12). Keys in
//! the spec's order, every scalar double-quoted ([`QuotedYaml`]). Pure: the
//! same facts give the same bytes, which is what makes a second export a no-op.

use serde::Deserialize;

use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::package::PackageKind;
use crate::core::quoted_yaml::QuotedYaml;
use crate::core::timestamp::Created;

pub const FREIGHT_FILE: &str = "freight.yaml";
pub const FREIGHT_SCHEMA_VERSION: &str = "release-capsule-freight/v1";

/// What `freight.yaml` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreightFacts {
    pub revision: GitSha,
    pub image: Repository,
    pub image_digest: Digest,
    pub package_kind: PackageKind,
    pub package_digest: Digest,
    /// The capsule the files came from, when one was published.
    pub capsule: Option<(Repository, Digest)>,
    pub created: Created,
}

pub fn freight_yaml(f: &FreightFacts) -> String {
    let tag = f.revision.tag();
    let mut y = QuotedYaml::new();
    y.scalar(0, "schemaVersion", FREIGHT_SCHEMA_VERSION);
    y.scalar(0, "revision", f.revision.as_str());
    y.scalar(0, "tag", &tag);
    y.map(0, "image");
    y.scalar(2, "ref", &f.image.with_digest(&f.image_digest));
    y.scalar(2, "repoURL", &f.image.to_string());
    y.scalar(2, "tag", &tag);
    y.scalar(2, "digest", f.image_digest.as_str());
    y.scalar(0, "packageType", f.package_kind.as_str());
    y.map(0, "package");
    y.scalar(2, "path", f.package_kind.as_str());
    y.scalar(2, "digest", f.package_digest.as_str());
    if let Some((repo, digest)) = &f.capsule {
        y.map(0, "capsule");
        y.scalar(2, "repoURL", &repo.to_string());
        y.scalar(2, "digest", digest.as_str());
    }
    y.scalar(0, "createdAt", &f.created.to_string());
    y.finish()
}

/// The fields of a `freight.yaml` found in the repository that decide
/// whether `current/` may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFreight {
    pub tag: Option<String>,
    pub created: Option<Created>,
}

pub fn read_freight(bytes: &[u8]) -> Option<FoundFreight> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        tag: Option<String>,
        created_at: Option<String>,
    }
    let doc: Doc = serde_yaml::from_slice(bytes).ok()?;
    Some(FoundFreight { tag: doc.tag, created: doc.created_at.and_then(|c| c.parse().ok()) })
}

/// A legacy-gitflow gate record: `revision` was merged (pushed) to a gate
/// branch at `merged_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRecord {
    pub revision: GitSha,
    pub merged_at: Created,
}

pub fn gate_yaml(r: &GateRecord) -> String {
    let mut y = QuotedYaml::new();
    y.scalar(0, "revision", r.revision.as_str());
    y.scalar(0, "tag", &r.revision.tag());
    y.scalar(0, "mergedAt", &r.merged_at.to_string());
    y.finish()
}

/// A gate record found in the repository; `Err` says what is wrong with it.
pub fn read_gate(bytes: &[u8]) -> Result<GateRecord, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        revision: Option<serde_yaml::Value>,
        tag: Option<String>,
        merged_at: Option<String>,
    }
    let doc: Doc = serde_yaml::from_slice(bytes).map_err(|e| format!("not YAML: {e}"))?;
    // An unquoted all-digit sha reads as a number: say so rather than "missing".
    let revision = match doc.revision {
        Some(serde_yaml::Value::String(s)) => s.parse::<GitSha>().map_err(|e| format!("revision: {e}"))?,
        Some(_) => return Err("revision: is not a string (quote it)".into()),
        None => return Err("revision: missing".into()),
    };
    if doc.tag.as_deref() != Some(revision.tag().as_str()) {
        return Err(format!("tag: expected {}, found {}", revision.tag(), doc.tag.as_deref().unwrap_or("(missing)")));
    }
    let merged_at = doc.merged_at.ok_or("mergedAt: missing")?.parse().map_err(|e| format!("mergedAt: {e}"))?;
    Ok(GateRecord { revision, merged_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789012345678901234567890123456789";

    fn facts() -> FreightFacts {
        FreightFacts {
            revision: SHA.parse().unwrap(),
            image: "ghcr.io/code-dot-org/code-dot-org".parse().unwrap(),
            image_digest: Digest::of(b"image"),
            package_kind: PackageKind::Helm,
            package_digest: Digest::of(b"package"),
            capsule: Some(("ghcr.io/code-dot-org/codeai-release-capsule".parse().unwrap(), Digest::of(b"capsule"))),
            created: "2026-11-20T10:11:12Z".parse().unwrap(),
        }
    }

    #[test]
    fn freight_keys_in_the_spec_order_every_scalar_quoted() {
        let text = freight_yaml(&facts());
        let keys: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap_or_default()).collect();
        assert_eq!(
            keys,
            [
                "schemaVersion",
                "revision",
                "tag",
                "image",
                "  ref",
                "  repoURL",
                "  tag",
                "  digest",
                "packageType",
                "package",
                "  path",
                "  digest",
                "capsule",
                "  repoURL",
                "  digest",
                "createdAt"
            ]
        );
        for l in text.lines().filter(|l| !l.ends_with(':')) {
            let value = l.split_once(": ").unwrap().1;
            assert!(value.starts_with('"') && value.ends_with('"'), "{l}");
        }
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["revision"].as_str(), Some(SHA), "an all-digit sha stays a string");
        assert_eq!(v["image"]["ref"].as_str(), Some(format!("ghcr.io/code-dot-org/code-dot-org@{}", Digest::of(b"image")).as_str()));
        assert_eq!(v["package"]["path"].as_str(), Some("helm"));
        let found = read_freight(text.as_bytes()).unwrap();
        assert_eq!(found.created, Some(facts().created));
        assert_eq!(found.tag.as_deref(), Some(format!("git-{SHA}").as_str()));
        let mut no_capsule = facts();
        no_capsule.capsule = None;
        assert!(!freight_yaml(&no_capsule).contains("\ncapsule:"));
    }

    #[test]
    fn gate_records_round_trip_and_bad_ones_say_why() {
        let r = GateRecord { revision: SHA.parse().unwrap(), merged_at: "2019-05-15T15:20:57Z".parse().unwrap() };
        let text = gate_yaml(&r);
        assert_eq!(text, format!("revision: \"{SHA}\"\ntag: \"git-{SHA}\"\nmergedAt: \"2019-05-15T15:20:57Z\"\n"));
        assert_eq!(read_gate(text.as_bytes()).unwrap(), r);
        // What Ruby's to_yaml wrote before (unquoted time, quoted sha) still reads.
        let legacy = format!("---\nrevision: '{SHA}'\ntag: git-{SHA}\nmergedAt: '2019-05-15T15:20:57Z'\n");
        assert_eq!(read_gate(legacy.as_bytes()).unwrap(), r);
        assert!(read_gate(b"revision: 12\n").unwrap_err().contains("quote it"));
        assert!(read_gate(b"revision: \"x\"\n").unwrap_err().starts_with("revision:"));
    }
}
