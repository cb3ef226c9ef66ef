//! The capsule core: pure and deterministic. It reads the package tree it is
//! given and writes to the sinks it is given; it never touches the network or
//! the clock, so the same inputs always give the same bytes.

pub mod archive;
pub mod capsule;
mod compress;
pub mod ident;
pub mod image_date;
pub mod layers;
pub mod manifest;
pub mod package;
pub mod percent;
pub mod provenance;
pub mod quoted_yaml;
pub mod reference;
pub mod release;
pub mod sbom;
pub mod tag;
pub mod timestamp;
pub mod unpack;
pub mod verify;

pub const TOOL_NAME: &str = "release-capsule";
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// SLSA `builder.id`: this tool, at this version.
pub const BUILDER_ID: &str = concat!("https://github.com/code-dot-org/release-capsule@v", env!("CARGO_PKG_VERSION"));
pub const BUILD_TYPE: &str = "https://github.com/code-dot-org/release-capsule/build-types/capsule/v1";

/// Pretty JSON with a final newline, for documents people read (SBOM, provenance).
/// serde_json's map keeps keys sorted, so the bytes are stable.
pub fn to_json_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Compact JSON, for bytes that are hashed and pushed (manifests, index.json).
pub fn to_compact_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
