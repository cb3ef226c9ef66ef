//! Assembly: release + package + metadata documents → the archive entries in
//! spec order, the layer, and the manifest.

use std::io::Write;

use super::archive::{self, ArchiveEntry, ArchiveError, EntryData, LayerInfo};
use super::ident::Digest;
use super::manifest::{self, Manifest};
use super::package::{Package, PackageEntry, MAX_TOTAL_SIZE};
use super::release::{self, Release, PROVENANCE_PATH, RELEASE_FILE, SBOM_PATH};
use super::{provenance, sbom};

/// Kargo's limit on the compressed layer.
pub const MAX_LAYER_SIZE: u64 = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CapsuleError {
    #[error("{what} {path}: is not valid JSON at line {line}, column {column}: {message}; the capsule's metadata must parse as JSON")]
    UserDocument { what: &'static str, path: String, line: usize, column: usize, message: String },
    #[error("capsule: {size} bytes uncompressed is over Kargo's 100 MiB limit")]
    TooLarge { size: u64 },
    #[error("capsule: the compressed layer is {size} bytes, over Kargo's 100 MiB limit")]
    LayerTooLarge { size: u64 },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// A user-supplied SBOM or provenance file, already read.
#[derive(Debug, Clone)]
pub struct UserDocument {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// The three small files of the capsule, as bytes.
#[derive(Debug, Clone)]
pub struct Documents {
    pub release_yaml: Vec<u8>,
    pub sbom: Vec<u8>,
    pub provenance: Vec<u8>,
}

fn checked(what: &'static str, doc: UserDocument) -> Result<Vec<u8>, CapsuleError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(&doc.bytes) {
        Ok(_) => Ok(doc.bytes),
        Err(e) => Err(CapsuleError::UserDocument { what, path: doc.path, line: e.line(), column: e.column(), message: e.to_string() }),
    }
}

pub fn documents(
    r: &Release,
    package: &Package,
    package_source_path: &str,
    user_sbom: Option<UserDocument>,
    user_provenance: Option<UserDocument>,
) -> Result<Documents, CapsuleError> {
    let sbom = match user_sbom {
        Some(doc) => checked("SBOM", doc)?,
        None => sbom::generate(r, package),
    };
    let provenance = match user_provenance {
        Some(doc) => checked("provenance", doc)?,
        None => provenance::generate(r, package_source_path),
    };
    Ok(Documents { release_yaml: release::render(r).into_bytes(), sbom, provenance })
}

/// The archive's entries, depth-first with siblings in byte order:
/// `metadata/` < `package/` < `release.yaml`.
pub fn entries<'a>(r: &Release, package: &'a Package, docs: &'a Documents) -> Vec<ArchiveEntry<'a>> {
    let pkg_root = r.package_path();
    let mut out = vec![
        ArchiveEntry { path: "metadata".into(), data: EntryData::Dir },
        ArchiveEntry { path: PROVENANCE_PATH.into(), data: EntryData::Bytes(&docs.provenance) },
        ArchiveEntry { path: SBOM_PATH.into(), data: EntryData::Bytes(&docs.sbom) },
        ArchiveEntry { path: "package".into(), data: EntryData::Dir },
        ArchiveEntry { path: pkg_root.clone(), data: EntryData::Dir },
    ];
    out.extend(package.entries.iter().map(|e| match e {
        PackageEntry::Dir { path } => ArchiveEntry { path: format!("{pkg_root}/{path}"), data: EntryData::Dir },
        PackageEntry::File(f) => ArchiveEntry {
            path: format!("{pkg_root}/{}", f.path),
            data: EntryData::File { source: &f.source, size: f.size, sha256: &f.sha256 },
        },
    }));
    out.push(ArchiveEntry { path: RELEASE_FILE.into(), data: EntryData::Bytes(&docs.release_yaml) });
    out
}

#[derive(Debug, Clone)]
pub struct Built {
    pub layer: LayerInfo,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub digest: Digest,
}

/// Writes the layer into `sink` and builds the manifest that names it.
pub fn write<W: Write>(r: &Release, package: &Package, docs: &Documents, sink: W) -> Result<(Built, W), CapsuleError> {
    let total = package.total_size + (docs.release_yaml.len() + docs.sbom.len() + docs.provenance.len()) as u64;
    if total > MAX_TOTAL_SIZE {
        return Err(CapsuleError::TooLarge { size: total });
    }
    let (layer, sink) = archive::write_layer(entries(r, package, docs), sink)?;
    if layer.size > MAX_LAYER_SIZE {
        return Err(CapsuleError::LayerTooLarge { size: layer.size });
    }
    let manifest = manifest::capsule_manifest(r, &layer.digest, layer.size);
    let manifest_bytes = manifest.to_bytes();
    let digest = Digest::of(&manifest_bytes);
    Ok((Built { layer, manifest, manifest_bytes, digest }, sink))
}
