//! Steps 1 and 2: the manifest fetched by digest hashes to it and is a v1
//! capsule manifest within the limits of section 2 (with layer 1, the Helm
//! chart, when present), and each downloaded layer hashes to its descriptor.

use super::Checks;
use crate::core::capsule::MAX_LAYER_SIZE;
use crate::core::ident::Digest;
use crate::core::manifest::{self, Descriptor, Manifest, ARTIFACT_TYPE, CHART_LAYER_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

/// What step 1 hands on: the manifest and its layer 0, known to be a v1 capsule.
#[derive(Debug, Clone)]
pub struct CapsuleManifest {
    pub manifest: Manifest,
    pub layer_digest: Digest,
    pub layer_size: u64,
    /// Layer 1, the Helm chart: its digest and size, when the manifest has one.
    pub chart_layer: Option<(Digest, u64)>,
}

fn describe(d: &Descriptor) -> String {
    format!("{} {} ({} bytes)", d.media_type, d.digest, d.size)
}

/// Step 1: the manifest fetched for `digest` hashes to it, and is a v1 capsule
/// manifest within the limits of section 2. `None` when any of that fails.
pub fn check_manifest(checks: &mut Checks, bytes: &[u8], digest: &Digest) -> Option<CapsuleManifest> {
    let before = checks.failure_count();
    checks.equal("manifest.digest", digest.as_str(), Some(Digest::of(bytes).as_str()));
    let manifest: Manifest = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) => {
            checks.that("manifest", false, "an OCI image manifest", format_args!("something else: {e}"));
            return None;
        }
    };
    checks.equal("manifest.schemaVersion", "2", Some(&manifest.schema_version.to_string()));
    checks.equal("manifest.mediaType", MANIFEST_MEDIA_TYPE, manifest.media_type.as_deref());
    checks.equal("artifactType", ARTIFACT_TYPE, manifest.artifact_type.as_deref());
    checks.equal("config", &describe(&manifest::empty_config_descriptor()), Some(&describe(&manifest.config)));
    checks.that("subject", manifest.subject.is_none(), "none", manifest.subject.as_ref().map_or("none".into(), |s| s.digest.clone()));
    let Some(layer) = manifest.layers.first() else {
        checks.that("layers", false, "layer 0 holding the capsule archive", "no layers");
        return None;
    };
    checks.equal("layers[0].mediaType", LAYER_MEDIA_TYPE, Some(&layer.media_type));
    checks.that("layers[0].size", layer.size <= MAX_LAYER_SIZE, format_args!("at most {MAX_LAYER_SIZE} bytes (100 MiB)"), layer.size);
    let layer_digest = layer.digest.parse::<Digest>().ok();
    checks.that("layers[0].digest", layer_digest.is_some(), "sha256:<64 hex>", &layer.digest);
    let layer_size = layer.size;
    // Layer 1, when present, is the Helm chart (spec section 5); other layers
    // after layer 0 are not this format's and are left alone.
    let chart_layer = match manifest.layers.get(1).filter(|l| l.media_type == CHART_LAYER_MEDIA_TYPE) {
        Some(l) => {
            checks.that("layers[1].size", l.size <= MAX_LAYER_SIZE, format_args!("at most {MAX_LAYER_SIZE} bytes (100 MiB)"), l.size);
            let digest = l.digest.parse::<Digest>().ok();
            checks.that("layers[1].digest", digest.is_some(), "sha256:<64 hex>", &l.digest);
            digest.map(|d| (d, l.size))
        }
        None => None,
    };
    match layer_digest {
        Some(layer_digest) if checks.failure_count() == before => Some(CapsuleManifest { manifest, layer_digest, layer_size, chart_layer }),
        _ => None,
    }
}

/// Step 2 for layer 1: the downloaded chart layer hashes to its descriptor.
pub fn check_chart_layer(checks: &mut Checks, expected: (&Digest, u64), digest: &Digest, size: u64) -> bool {
    let size_ok = checks.equal("chart layer.size", &expected.1.to_string(), Some(&size.to_string()));
    checks.equal("chart layer.digest", expected.0.as_str(), Some(digest.as_str())) && size_ok
}

/// Step 2: the downloaded layer hashes to its descriptor.
pub fn check_layer(checks: &mut Checks, expected: &CapsuleManifest, digest: &Digest, size: u64) -> bool {
    let size_ok = checks.equal("layer.size", &expected.layer_size.to_string(), Some(&size.to_string()));
    checks.equal("layer.digest", expected.layer_digest.as_str(), Some(digest.as_str())) && size_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::manifest::capsule_manifest;
    use crate::core::release::tests::sample;

    fn manifest_bytes(edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let mut m = capsule_manifest(&sample(), &Digest::of(b"layer"), 5);
        edit(&mut m);
        m.to_bytes()
    }

    #[test]
    fn manifest_checks() {
        let good = manifest_bytes(|_| {});
        let mut checks = Checks::default();
        let m = check_manifest(&mut checks, &good, &Digest::of(&good)).unwrap();
        assert!(checks.all_ok(), "{}", checks.failure_lines());
        assert_eq!((m.layer_digest, m.layer_size), (Digest::of(b"layer"), 5));

        let wrong = Digest::of(b"another manifest");
        let mut checks = Checks::default();
        assert!(check_manifest(&mut checks, &good, &wrong).is_none());
        assert_eq!(
            checks.failed().map(|c| c.to_string()).collect::<Vec<_>>(),
            [format!("manifest.digest: expected {wrong}, got {}", Digest::of(&good))]
        );

        type Edit = Box<dyn FnOnce(&mut Manifest)>;
        let cases: Vec<(Edit, Vec<&str>)> = vec![
            (Box::new(|m| m.artifact_type = Some("application/vnd.cncf.helm.config.v1+json".into())), vec!["artifactType"]),
            (Box::new(|m| m.artifact_type = None), vec!["artifactType"]),
            (Box::new(|m| m.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into()), vec!["layers[0].mediaType"]),
            (Box::new(|m| m.layers[0].size = MAX_LAYER_SIZE + 1), vec!["layers[0].size"]),
            (Box::new(|m| m.layers[0].digest = "md5:00".into()), vec!["layers[0].digest"]),
            (Box::new(|m| m.layers.clear()), vec!["layers"]),
            (Box::new(|m| m.config.media_type = "application/vnd.oci.image.config.v1+json".into()), vec!["config"]),
            (Box::new(|m| m.config.size = 3), vec!["config"]),
            (Box::new(|m| m.media_type = Some("application/vnd.docker.distribution.manifest.v2+json".into())), vec!["manifest.mediaType"]),
            (Box::new(|m| m.subject = Some(m.config.clone())), vec!["subject"]),
        ];
        for (edit, expected) in cases {
            let bytes = manifest_bytes(edit);
            let mut checks = Checks::default();
            assert!(check_manifest(&mut checks, &bytes, &Digest::of(&bytes)).is_none());
            assert_eq!(checks.failed().map(|c| c.name.as_str()).collect::<Vec<_>>(), expected);
        }

        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let mut checks = Checks::default();
        assert!(check_manifest(&mut checks, index, &Digest::of(index)).is_none());
        assert_eq!(checks.failed().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["manifest"]);
    }

    #[test]
    fn layer_check_compares_digest_and_size() {
        let good = manifest_bytes(|_| {});
        let m = check_manifest(&mut Checks::default(), &good, &Digest::of(&good)).unwrap();
        let mut checks = Checks::default();
        assert!(check_layer(&mut checks, &m, &Digest::of(b"layer"), 5));
        assert!(!check_layer(&mut checks, &m, &Digest::of(b"tampered"), 8));
        assert_eq!(checks.failed().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["layer.size", "layer.digest"]);
    }
}
