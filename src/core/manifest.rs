//! The capsule's OCI manifest (spec section 5), serialized by us so its digest
//! is the hash of bytes we chose, and its annotations, written and read back by
//! one pair of functions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ident::Digest;
use super::release::Release;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const ARTIFACT_TYPE: &str = "application/vnd.release-capsule.v1";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.release-capsule.layer.v1.tar+gzip";
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
pub const LAYER_TITLE: &str = "release-capsule.tar.gz";
/// Layer 1 (spec section 5): what Flux's layerSelector and Helm look for.
pub const CHART_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_REVISION: &str = "org.opencontainers.image.revision";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_IMAGE: &str = "vnd.release-capsule.image";
pub const ANN_PACKAGE_KIND: &str = "vnd.release-capsule.package.kind";
pub const ANN_PACKAGE_DIGEST: &str = "vnd.release-capsule.package.digest";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest, fields in the order the spec shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The annotations of spec section 5, from the release.
pub fn annotations(r: &Release) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ANN_CREATED.to_owned(), r.created.to_string()),
        (ANN_REVISION.to_owned(), r.git_commit.to_string()),
        (ANN_SOURCE.to_owned(), r.source.to_string()),
        (ANN_IMAGE.to_owned(), r.image.with_digest(&r.image_digest)),
        (ANN_PACKAGE_KIND.to_owned(), r.package_kind.to_string()),
        (ANN_PACKAGE_DIGEST.to_owned(), r.package_digest.to_string()),
    ])
}

/// What the annotations say, read back (the inverse of [`annotations`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnotationFacts {
    pub created: Option<String>,
    pub revision: Option<String>,
    pub source: Option<String>,
    pub image: Option<String>,
    pub package_kind: Option<String>,
    pub package_digest: Option<String>,
}

pub fn read_annotations(a: &BTreeMap<String, String>) -> AnnotationFacts {
    let get = |k: &str| a.get(k).cloned();
    AnnotationFacts {
        created: get(ANN_CREATED),
        revision: get(ANN_REVISION),
        source: get(ANN_SOURCE),
        image: get(ANN_IMAGE),
        package_kind: get(ANN_PACKAGE_KIND),
        package_digest: get(ANN_PACKAGE_DIGEST),
    }
}

pub fn empty_config_descriptor() -> Descriptor {
    Descriptor {
        media_type: EMPTY_CONFIG_MEDIA_TYPE.into(),
        digest: Digest::of(EMPTY_CONFIG).to_string(),
        size: EMPTY_CONFIG.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// The capsule manifest for a layer, and its compact bytes.
pub fn capsule_manifest(r: &Release, layer_digest: &Digest, layer_size: u64) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: empty_config_descriptor(),
        layers: vec![Descriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: layer_digest.to_string(),
            size: layer_size,
            artifact_type: None,
            annotations: BTreeMap::from([(ANN_TITLE.to_owned(), LAYER_TITLE.to_owned())]),
        }],
        subject: None,
        annotations: annotations(r),
    }
}

/// Layer 1's descriptor, titled as `helm package` names the archive.
pub fn chart_layer_descriptor(digest: &Digest, size: u64, name: &str, version: &str) -> Descriptor {
    Descriptor {
        media_type: CHART_LAYER_MEDIA_TYPE.into(),
        digest: digest.to_string(),
        size,
        artifact_type: None,
        annotations: BTreeMap::from([(ANN_TITLE.to_owned(), chart_archive_name(name, version))]),
    }
}

/// `<name>-<version>.tgz`.
pub fn chart_archive_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.tgz")
}

impl Manifest {
    /// Compact JSON: the exact bytes pushed and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::to_compact_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape_matches_the_spec() {
        let r = super::super::release::tests::sample();
        let m = capsule_manifest(&r, &Digest::of(b"layer"), 5);
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.release-capsule.v1","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.release-capsule.layer.v1.tar+gzip""#), "{text}");
        assert!(!text.contains("subject"));
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        let facts = read_annotations(&back.annotations);
        assert_eq!(facts.revision.as_deref(), Some(r.git_commit.as_str()));
        assert_eq!(facts.image, Some(r.image.with_digest(&r.image_digest)));
        assert_eq!(facts.created.as_deref(), Some("2026-11-20T10:11:12Z"));
    }
}
