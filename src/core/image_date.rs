//! The app image's build date, read the way Kargo reads it (spec section 5):
//! the manifest's (or index's) `org.opencontainers.image.created` annotation,
//! else the config's label of that name, else the config's `created`; for an
//! index without the annotation, the newest child. A value that does not parse,
//! or is the Unix epoch (reproducible builds' placeholder), is no date at all.
//!
//! Pure: the caller fetches documents (from a registry or a layout) and asks.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ident::Digest;
use super::manifest::ANN_CREATED;
use super::timestamp::Created;

/// buildx marks its provenance/SBOM attestation manifests this way; they are
/// not images and have no build date of their own.
const ANN_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDoc {
    /// A manifest: its annotation, and the config to look in when that is absent.
    Manifest { annotated: Option<Created>, config: Child },
    /// An index: its annotation, and the image children to look in otherwise.
    Index { annotated: Option<Created>, children: Vec<Child> },
}

impl ImageDoc {
    pub fn annotated(&self) -> Option<Created> {
        match self {
            ImageDoc::Manifest { annotated, .. } | ImageDoc::Index { annotated, .. } => *annotated,
        }
    }
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct RawDoc {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    config: Option<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
}

/// A date string as a usable date: RFC 3339, after the epoch.
pub fn usable(value: &str) -> Option<Created> {
    value.trim().parse().ok()
}

fn child(d: RawDescriptor) -> Result<Child, String> {
    let digest = d.digest.parse().map_err(|_| format!("child digest {:?} is not a sha256 digest", d.digest))?;
    Ok(Child { digest, size: d.size, media_type: d.media_type })
}

/// Reads a manifest or index document.
pub fn read(bytes: &[u8]) -> Result<ImageDoc, String> {
    let doc: RawDoc = serde_json::from_slice(bytes).map_err(|e| format!("does not parse as an image manifest or index: {e}"))?;
    let annotated = doc.annotations.get(ANN_CREATED).and_then(|v| usable(v));
    match (doc.manifests, doc.config) {
        (Some(manifests), _) => {
            let children = manifests
                .into_iter()
                .filter(|d| d.annotations.get(ANN_REFERENCE_TYPE).is_none_or(|t| t != "attestation-manifest"))
                .filter(|d| d.platform.as_ref().is_none_or(|p| !(p.os == "unknown" && p.architecture == "unknown")))
                .map(child)
                .collect::<Result<_, _>>()?;
            Ok(ImageDoc::Index { annotated, children })
        }
        (None, Some(config)) => Ok(ImageDoc::Manifest { annotated, config: child(config)? }),
        (None, None) => Err("is neither an image manifest (no config) nor an index (no manifests)".into()),
    }
}

/// The date an image config gives: the label, else `created`.
pub fn from_config(bytes: &[u8]) -> Option<Created> {
    #[derive(Deserialize)]
    struct Config {
        created: Option<String>,
        config: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    let c: Config = serde_json::from_slice(bytes).ok()?;
    let label = c.config.and_then(|i| i.labels).and_then(|l| l.get(ANN_CREATED).cloned());
    label.and_then(|v| usable(&v)).or_else(|| c.created.and_then(|v| usable(&v)))
}

/// The newest of the children's dates.
pub fn newest(dates: impl IntoIterator<Item = Option<Created>>) -> Option<Created> {
    dates.into_iter().flatten().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Created {
        s.parse().unwrap()
    }

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn manifest_annotation_first() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{CFG}","size":2}},"layers":[],"annotations":{{"org.opencontainers.image.created":"2026-01-02T03:04:05Z"}}}}"#
        );
        let doc = read(m.as_bytes()).unwrap();
        assert_eq!(doc.annotated(), Some(d("2026-01-02T03:04:05Z")));
        assert!(matches!(doc, ImageDoc::Manifest { config, .. } if config.digest.as_str() == CFG));
        // An epoch or garbage annotation is no date.
        for bad in ["1970-01-01T00:00:00Z", "yesterday", ""] {
            let m = format!(r#"{{"config":{{"digest":"{CFG}","size":2}},"annotations":{{"org.opencontainers.image.created":"{bad}"}}}}"#);
            assert_eq!(read(m.as_bytes()).unwrap().annotated(), None, "{bad}");
        }
    }

    #[test]
    fn config_label_then_created() {
        let both =
            br#"{"created":"2026-01-01T00:00:00Z","config":{"Labels":{"org.opencontainers.image.created":"2026-02-02T00:00:00+01:00"}}}"#;
        assert_eq!(from_config(both), Some(d("2026-02-01T23:00:00Z")));
        let created_only = br#"{"created":"2026-01-01T00:00:00.123456789Z","config":{"Labels":null}}"#;
        assert_eq!(from_config(created_only), Some(d("2026-01-01T00:00:00Z")));
        // A placeholder label falls through to created; epoch everywhere means none.
        let epoch_label =
            br#"{"created":"2026-01-01T00:00:00Z","config":{"Labels":{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}}}"#;
        assert_eq!(from_config(epoch_label), Some(d("2026-01-01T00:00:00Z")));
        assert_eq!(from_config(br#"{"created":"1970-01-01T00:00:00Z"}"#), None);
        assert_eq!(from_config(b"{}"), None);
        assert_eq!(from_config(b"not json"), None);
    }

    #[test]
    fn index_children_skip_attestations() {
        let m1 = Digest::of(b"m1");
        let m2 = Digest::of(b"m2");
        let att = Digest::of(b"att");
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m2}","size":11,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{att}","size":12,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#
        );
        let ImageDoc::Index { annotated, children } = read(idx.as_bytes()).unwrap() else { panic!("an index") };
        assert_eq!(annotated, None);
        assert_eq!(children.iter().map(|c| c.digest.clone()).collect::<Vec<_>>(), vec![m1, m2]);
        assert_eq!(newest([Some(d("2026-01-01T00:00:00Z")), None, Some(d("2026-03-01T00:00:00Z"))]), Some(d("2026-03-01T00:00:00Z")));
        assert_eq!(newest([None, None]), None);
        assert!(read(b"{}").is_err());
    }
}
