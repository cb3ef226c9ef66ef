//! cosign's signature objects (sigstore/cosign specs/SIGNATURE_SPEC.md), as
//! pure functions: the simple-signing payload, the tag it is stored under, and
//! the OCI image manifest that holds the signatures, one layer per signature.

use std::collections::BTreeMap;

use base64::Engine as _;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature};

use super::keys::{PrivateKey, PublicKey};
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{Descriptor, Manifest, MANIFEST_MEDIA_TYPE};

pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// A simple-signing payload is a few hundred bytes; more is not one.
pub const MAX_PAYLOAD_SIZE: u64 = 64 * 1024;

/// The payload `cosign sign` writes for `repo@digest`, byte for byte: compact
/// JSON in this key order, `optional` null.
pub fn payload(repo: &Repository, digest: &Digest) -> Vec<u8> {
    let reference = serde_json::to_string(&repo.to_string()).unwrap_or_default();
    let digest = serde_json::to_string(digest.as_str()).unwrap_or_default();
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{reference}}},"image":{{"docker-manifest-digest":{digest}}},"type":"{PAYLOAD_TYPE}"}},"optional":null}}"#
    )
    .into_bytes()
}

/// ECDSA P-256 over SHA-256 of `payload`, ASN.1 DER, base64: the value of the
/// signature annotation. RFC 6979 nonces make it the same for the same key
/// and payload.
pub fn sign(key: &PrivateKey, payload: &[u8]) -> String {
    let signature: Signature = key.signing_key().sign(payload);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// Why a signature layer does not count as a signature by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    NotBase64,
    NotDer,
    WrongKey,
    /// The payload is not cosign's, or is for another digest.
    Payload(String),
}

/// Whether `payload` is cosign's payload for `digest` and `signature_b64`
/// its signature by `key`. What cosign and Flux check; `docker-reference`
/// is ignored, as the spec says.
pub fn check(key: &PublicKey, digest: &Digest, payload: &[u8], signature_b64: &str) -> Result<(), Invalid> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| Invalid::Payload(format!("not JSON: {e}")))?;
    let critical = value.get("critical").ok_or_else(|| Invalid::Payload("no critical section".into()))?;
    match critical.get("type").and_then(|t| t.as_str()) {
        Some(PAYLOAD_TYPE) => {}
        other => return Err(Invalid::Payload(format!("critical.type is {other:?}"))),
    }
    let signed = critical.pointer("/image/docker-manifest-digest").and_then(|d| d.as_str());
    if signed != Some(digest.as_str()) {
        return Err(Invalid::Payload(format!("it signs {}", signed.unwrap_or("no digest"))));
    }
    let der = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()).map_err(|_| Invalid::NotBase64)?;
    let signature = DerSignature::from_bytes(&der).map_err(|_| Invalid::NotDer)?;
    key.verifying.verify(payload, &signature).map_err(|_| Invalid::WrongKey)
}

/// The descriptor of one signature layer.
pub fn signature_layer(payload: &[u8], signature_b64: &str) -> Descriptor {
    Descriptor {
        media_type: PAYLOAD_MEDIA_TYPE.into(),
        digest: Digest::of(payload).to_string(),
        size: payload.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), signature_b64.to_owned())]),
    }
}

/// The signature manifest holding `layers` and its config blob, as
/// go-containerregistry (and so cosign) writes an image of those layers:
/// the config's `rootfs.diff_ids` are the layers' digests (the payloads are
/// not compressed).
pub fn signature_manifest(layers: Vec<Descriptor>) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": diff_ids.iter().map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: None,
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: Digest::of(&config_bytes).to_string(),
            size: config_bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        },
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    (config_bytes, manifest.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmKnLL81dCEYc6Spq\nrFukFeTnU5JjtXfeNHAXJj3hYTahRANCAATjp4/Z4tUbZwUdId07GQeUdwLll4Br\nYLP25Fk+mBY2G0lyKqjqLG5hxhimbEJH6j+lzg5tcYpQgzXtOJ66Zi0N\n-----END PRIVATE KEY-----\n";

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let repo: Repository = "ghcr.io/acme/app-release-capsule".parse().unwrap();
        let digest = Digest::of(b"capsule");
        assert_eq!(
            String::from_utf8(payload(&repo, &digest)).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"ghcr.io/acme/app-release-capsule"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(crate::core::tag::Tag::cosign_signature(&digest).as_str(), format!("sha256-{}.sig", digest.hex()));
    }

    #[test]
    fn signatures_check_against_the_key_the_digest_and_the_payload() {
        let key = PrivateKey::from_pem(PKCS8, None, "test.key").unwrap();
        let repo: Repository = "ghcr.io/acme/app".parse().unwrap();
        let digest = Digest::of(b"capsule");
        let p = payload(&repo, &digest);
        let sig = sign(&key, &p);
        assert_eq!(sig, sign(&key, &p), "RFC 6979: the same signature every time");
        assert_eq!(check(&key.public, &digest, &p, &sig), Ok(()));
        assert!(matches!(check(&key.public, &Digest::of(b"other"), &p, &sig), Err(Invalid::Payload(_))));
        let other_payload = payload(&repo, &Digest::of(b"other"));
        assert_eq!(check(&key.public, &Digest::of(b"other"), &other_payload, &sig), Err(Invalid::WrongKey));
        assert_eq!(check(&key.public, &digest, &p, "%%"), Err(Invalid::NotBase64));
        assert_eq!(check(&key.public, &digest, &p, "AAAA"), Err(Invalid::NotDer));
        let (config, manifest) = signature_manifest(vec![signature_layer(&p, &sig)]);
        let m: Manifest = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m.layers[0].media_type, PAYLOAD_MEDIA_TYPE);
        assert_eq!(m.config.digest, Digest::of(&config).to_string());
        let c: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], Digest::of(&p).to_string());
    }
}
