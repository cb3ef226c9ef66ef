//! cosign's key files: the private key as `cosign generate-key-pair` writes it
//! (PEM `ENCRYPTED SIGSTORE PRIVATE KEY`, or the older `ENCRYPTED COSIGN
//! PRIVATE KEY`: a JSON envelope of scrypt parameters and a NaCl secretbox
//! holding the PKCS#8 DER key), or an unencrypted PKCS#8 `PRIVATE KEY`; the
//! public key as a PKIX `PUBLIC KEY`. ECDSA P-256 only: it is what
//! `generate-key-pair` makes and what Flux's cosign verifier expects.
//!
//! Nothing here prints key material: errors name the file and what is wrong.

use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use sha2::{Digest as _, Sha256};

const ENCRYPTED_LABELS: [&str; 2] = ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot be read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error(
        "{path}: the password does not open this key (COSIGN_PASSWORD is {}); set COSIGN_PASSWORD to the password given to cosign generate-key-pair",
        if *.password_set { "set but wrong" } else { "not set, and the key has a password" }
    )]
    WrongPassword { path: String, password_set: bool },
    #[error("{path}: {what} is not supported; use an ECDSA P-256 key, as `cosign generate-key-pair` makes")]
    Unsupported { path: String, what: String },
}

/// A private key to sign with. Its Debug shows only the public key's fingerprint.
pub struct PrivateKey {
    signing: SigningKey,
    pub public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("public", &self.public.fingerprint()).finish_non_exhaustive()
    }
}

/// A public key to verify with, and how to name it in messages.
#[derive(Clone)]
pub struct PublicKey {
    pub verifying: VerifyingKey,
    /// Where it came from (a path), for messages.
    pub name: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} {})", self.name, self.fingerprint())
    }
}

impl PublicKey {
    /// `sha256:` of the DER SubjectPublicKeyInfo: stable across PEM formatting.
    pub fn fingerprint(&self) -> String {
        let der = self.verifying.to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        format!("sha256:{}", crate::core::ident::hex(&Sha256::digest(der)))
    }

    /// The key and where it came from, as messages name it.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.fingerprint())
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        Self::from_pem(&text, &shown)
    }

    pub fn from_pem(text: &str, name: &str) -> Result<Self, KeyError> {
        let malformed = |message: String| KeyError::Malformed { path: name.to_owned(), message };
        let (label, der) = pem_rfc7468::decode_vec(text.trim().as_bytes())
            .map_err(|e| malformed(format!("is not a PEM file ({e}); give the cosign.pub that `cosign generate-key-pair` wrote")))?;
        if label != "PUBLIC KEY" {
            return Err(malformed(format!("holds a {label:?} block, not a PUBLIC KEY; give the public half (cosign.pub)")));
        }
        let verifying = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::Unsupported { path: name.to_owned(), what: format!("this public key ({e})") })?;
        Ok(Self { verifying, name: name.to_owned() })
    }
}

impl PrivateKey {
    /// Reads a key file; `password` (COSIGN_PASSWORD) opens an encrypted one.
    pub fn from_file(path: &Path, password: Option<&str>) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        Self::from_pem(&text, password, &shown)
    }

    /// `name` says where the key came from, for messages (a path, or an input).
    pub fn from_pem(text: &str, password: Option<&str>, name: &str) -> Result<Self, KeyError> {
        let malformed = |message: String| KeyError::Malformed { path: name.to_owned(), message };
        let (label, der) = pem_rfc7468::decode_vec(text.trim().as_bytes())
            .map_err(|e| malformed(format!("is not a PEM key file ({e}); give the cosign.key that `cosign generate-key-pair` wrote")))?;
        let pkcs8 = if ENCRYPTED_LABELS.contains(&label) {
            decrypt(&der, password, name)?
        } else if label == "PRIVATE KEY" {
            der
        } else if label == "PUBLIC KEY" {
            return Err(malformed("holds a public key; signing needs the private key (cosign.key)".into()));
        } else {
            return Err(malformed(format!(
                "holds a {label:?} block; give a cosign key (ENCRYPTED SIGSTORE PRIVATE KEY) or an unencrypted PKCS#8 PRIVATE KEY \
                 (`openssl pkcs8 -topk8 -nocrypt` converts an EC PRIVATE KEY)"
            )));
        };
        let signing = SigningKey::from_pkcs8_der(&pkcs8)
            .map_err(|_| KeyError::Unsupported { path: name.to_owned(), what: describe_pkcs8(&pkcs8) })?;
        let public = PublicKey { verifying: *signing.verifying_key(), name: name.to_owned() };
        Ok(Self { signing, public })
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// What a PKCS#8 key that is not P-256 is, as far as its algorithm says.
fn describe_pkcs8(der: &[u8]) -> String {
    // The algorithm OIDs, DER-encoded, as they appear in a PrivateKeyInfo.
    const RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(RSA) {
        "an RSA key".into()
    } else if has(ED25519) {
        "an Ed25519 key".into()
    } else if has(EC) {
        "an EC key on a curve other than P-256".into()
    } else {
        "this key (not a PKCS#8 private key)".into()
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Opens cosign's envelope (secure-systems-lab's `encrypted` format): scrypt
/// derives a 32-byte key from the password and salt, and a NaCl secretbox
/// (XSalsa20-Poly1305) holds the PKCS#8 DER key.
fn decrypt(envelope: &[u8], password: Option<&str>, name: &str) -> Result<Vec<u8>, KeyError> {
    let malformed = |message: String| KeyError::Malformed { path: name.to_owned(), message };
    let e: Envelope = serde_json::from_slice(envelope).map_err(|e| malformed(format!("its encrypted envelope is not cosign's ({e})")))?;
    if e.kdf.name != "scrypt" || e.cipher.name != "nacl/secretbox" {
        return Err(malformed(format!("uses {} with {}; cosign keys use scrypt with nacl/secretbox", e.kdf.name, e.cipher.name)));
    }
    let b64 = |field: &str, v: &str| {
        base64::engine::general_purpose::STANDARD.decode(v).map_err(|_| malformed(format!("its {field} is not base64")))
    };
    let (salt, nonce, ciphertext) = (b64("salt", &e.kdf.salt)?, b64("nonce", &e.cipher.nonce)?, b64("ciphertext", &e.ciphertext)?);
    let n = e.kdf.params.N;
    if !n.is_power_of_two() || !(2..=(1 << 22)).contains(&n) {
        return Err(malformed(format!("its scrypt N is {n}, not a power of two up to 2^22")));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, e.kdf.params.r, e.kdf.params.p, 32)
        .map_err(|err| malformed(format!("its scrypt parameters are invalid ({err})")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.unwrap_or("").as_bytes(), &salt, &params, &mut key)
        .map_err(|err| malformed(format!("scrypt failed ({err})")))?;
    if nonce.len() != 24 {
        return Err(malformed(format!("its nonce is {} bytes, not 24", nonce.len())));
    }
    let cipher = XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| KeyError::WrongPassword { path: name.to_owned(), password_set: password.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::payload;

    fn vector(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/data/cosign/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Signs with the key and checks the signature with its public half.
    fn round_trip(key: &PrivateKey) {
        let repo: crate::core::ident::Repository = "ghcr.io/acme/app".parse().unwrap();
        let digest = crate::core::ident::Digest::of(b"capsule");
        let p = payload::payload(&repo, &digest);
        assert_eq!(payload::check(&key.public, &digest, &p, &payload::sign(key, &p)), Ok(()));
    }

    #[test]
    fn keys_made_by_cosign_and_sigstore_rs_open_with_their_passwords() {
        for (file, password) in [
            ("cosign-keys-test-sigstore.key", Some("hello")),
            ("cosign-keys-test-cosign-label.key", Some("hello")),
            ("sigstore-rs-cosign-generated-empty-password.key", None),
            ("sigstore-rs-cosign-generated-empty-password.key", Some("")),
            ("sigstore-rs-ecdsa-encrypted.key", Some("123")),
            ("sigstore-rs-ecdsa-unencrypted.key", None),
        ] {
            let key = PrivateKey::from_pem(&vector(file), password, file).unwrap_or_else(|e| panic!("{file}: {e}"));
            round_trip(&key);
            assert!(!format!("{key:?}").contains("BEGIN"), "Debug shows no key material");
        }
    }

    #[test]
    fn wrong_passwords_and_unsupported_keys_are_named() {
        let e = PrivateKey::from_pem(&vector("cosign-keys-test-sigstore.key"), Some("wrong"), "cosign.key").unwrap_err();
        assert!(matches!(e, KeyError::WrongPassword { password_set: true, .. }), "{e}");
        assert!(e.to_string().contains("COSIGN_PASSWORD is set but wrong"), "{e}");
        let e = PrivateKey::from_pem(&vector("sigstore-rs-ecdsa-encrypted.key"), None, "cosign.key").unwrap_err();
        assert!(e.to_string().contains("not set, and the key has a password"), "{e}");
        let e = PrivateKey::from_pem(&vector("cosign-keys-test-rsa-pkcs8.key"), None, "rsa.key").unwrap_err();
        assert_eq!(e.to_string(), "rsa.key: an RSA key is not supported; use an ECDSA P-256 key, as `cosign generate-key-pair` makes");
        let e = PrivateKey::from_pem(&vector("cosign-keys-test-ec-sec1.key"), Some("hello"), "sec1.key").unwrap_err();
        assert!(matches!(e, KeyError::Unsupported { .. }), "{e}");
        for (text, expected) in [
            ("not a key", "is not a PEM key file"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "holds a public key"),
            ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ne30=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", "not cosign's"),
        ] {
            let e = PrivateKey::from_pem(text, Some("x"), "k").unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn public_keys_are_pkix_pem() {
        let key = PrivateKey::from_pem(&vector("sigstore-rs-ecdsa-unencrypted.key"), None, "k").unwrap();
        let pem = key.public.verifying.to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let public = PublicKey::from_pem(&pem, "cosign.pub").unwrap();
        assert_eq!(public.fingerprint(), key.public.fingerprint());
        assert!(PublicKey::from_pem(&vector("sigstore-rs-ecdsa-unencrypted.key"), "k").is_err(), "a private key is not a public key");
    }
}
