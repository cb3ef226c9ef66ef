//! Assembly: release + package + metadata documents → the archive entries in
//! spec order, the layer, and the manifest.

use std::io::Write;

use super::archive::{ArchiveEntry, ArchiveError, EntryData, Files, LayerInfo};
use super::ident::Digest;
use super::layers::{self, LayerJob};
use super::manifest::{self, Manifest};
use super::package::{ChartInfo, Package, PackageEntry, MAX_TOTAL_SIZE};
use super::release::{self, Release, PROVENANCE_PATH, RELEASE_FILE, SBOM_PATH};
use super::{provenance, sbom};

/// Kargo's limit on the compressed layer.
pub const MAX_LAYER_SIZE: u64 = 100 * 1024 * 1024;
/// Helm's chart loader refuses a bigger file (helm.sh/helm/v3
/// pkg/chart/loader: MaxDecompressedFileSize); its total limit, 100 MiB, is
/// Kargo's too, so the package limit already covers it.
pub const MAX_CHART_FILE_SIZE: u64 = 5 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CapsuleError {
    #[error("{what} {path}: is not valid JSON at line {line}, column {column}: {message}; the capsule's metadata must parse as JSON")]
    UserDocument { what: &'static str, path: String, line: usize, column: usize, message: String },
    #[error("capsule: {size} bytes uncompressed is over Kargo's 100 MiB limit")]
    TooLarge { size: u64 },
    #[error("capsule: the compressed layer is {size} bytes, over Kargo's 100 MiB limit")]
    LayerTooLarge { size: u64 },
    #[error("{path}: {size} bytes is over Helm's 5 MiB limit for one chart file, so Helm (and Flux's HelmRelease) could not load the chart layer; make the file smaller, or turn the chart layer off (--no-helm-layer, or the action input helm-layer: false) if nothing loads the chart from the capsule with Helm")]
    ChartFileTooLarge { path: String, size: u64 },
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

/// Layer 1's entries (spec section 5): the chart as `helm package` lays it
/// out, every entry under one directory named after the chart, the files
/// exactly those of `package/helm/`, in the same order.
pub fn chart_entries<'a>(package: &'a Package, chart: &ChartInfo) -> Vec<ArchiveEntry<'a>> {
    let root = chart.name.clone();
    let mut out = vec![ArchiveEntry { path: root.clone(), data: EntryData::Dir }];
    out.extend(package.entries.iter().map(|e| match e {
        PackageEntry::Dir { path } => ArchiveEntry { path: format!("{root}/{path}"), data: EntryData::Dir },
        PackageEntry::File(f) => ArchiveEntry {
            path: format!("{root}/{}", f.path),
            data: EntryData::File { source: &f.source, size: f.size, sha256: &f.sha256 },
        },
    }));
    out
}

#[derive(Debug, Clone)]
pub struct Built {
    pub layer: LayerInfo,
    /// Layer 1, the Helm chart, when it was written.
    pub chart_layer: Option<LayerInfo>,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub digest: Digest,
}

/// Writes layer 0 into `sink` and, for a Helm chart when `chart_sink` is
/// given, layer 1 into it (both at once: the package is read once for both);
/// then builds the manifest that names them.
pub fn write<W: Write + Send>(
    r: &Release,
    package: &Package,
    docs: &Documents,
    sink: W,
    chart_sink: Option<W>,
    files: &dyn Files,
) -> Result<(Built, W, Option<W>), CapsuleError> {
    let total = package.total_size + (docs.release_yaml.len() + docs.sbom.len() + docs.provenance.len()) as u64;
    if total > MAX_TOTAL_SIZE {
        return Err(CapsuleError::TooLarge { size: total });
    }
    let chart = package.chart.as_ref().filter(|_| chart_sink.is_some());
    if chart.is_some() {
        if let Some(big) = package.files().find(|f| f.size > MAX_CHART_FILE_SIZE) {
            return Err(CapsuleError::ChartFileTooLarge { path: big.path.clone(), size: big.size });
        }
    }
    let mut jobs = vec![LayerJob { entries: entries(r, package, docs), sink }];
    let (chart, unused_chart_sink) = match (chart, chart_sink) {
        (Some(chart), Some(chart_sink)) => {
            jobs.push(LayerJob { entries: chart_entries(package, chart), sink: chart_sink });
            (Some(chart), None)
        }
        (_, chart_sink) => (None, chart_sink),
    };
    let mut written = layers::write_layers(jobs, files)?.into_iter();
    let (layer, sink) = written.next().expect("layer 0 was written");
    if layer.size > MAX_LAYER_SIZE {
        return Err(CapsuleError::LayerTooLarge { size: layer.size });
    }
    let mut manifest = manifest::capsule_manifest(r, &layer.digest, layer.size);
    let (chart_layer, chart_sink) = match (chart, written.next()) {
        (Some(chart), Some((info, chart_sink))) => {
            manifest.layers.push(manifest::chart_layer_descriptor(&info.digest, info.size, &chart.name, &chart.version));
            (Some(info), Some(chart_sink))
        }
        _ => (None, unused_chart_sink),
    };
    let manifest_bytes = manifest.to_bytes();
    let digest = Digest::of(&manifest_bytes);
    Ok((Built { layer, chart_layer, manifest, manifest_bytes, digest }, sink, chart_sink))
}
