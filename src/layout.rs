//! OCI image layout directories (spec section 6): the local form of a capsule,
//! written whole into a temporary sibling and moved into place, so a failed
//! build never leaves a half-written layout behind.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::archive::ArchiveError;
use crate::core::capsule::{self, Built, CapsuleError, Documents};
use crate::core::ident::Digest;
use crate::core::manifest::{Descriptor, ANN_REF_NAME, ARTIFACT_TYPE, EMPTY_CONFIG, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::core::package::Package;
use crate::core::release::{Release, RELEASE_FILE};
use crate::core::to_compact_json;
use crate::tree::LocalFiles;

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const INDEX_FILE: &str = "index.json";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("output {path}: exists and holds something other than {}; choose another directory or remove it", .replaceable.describe())]
    Occupied { path: PathBuf, replaceable: Replaceable },
    #[error("{path}: cannot be written")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Capsule(#[from] CapsuleError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The blob path for a digest inside a layout.
pub fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs").join("sha256").join(digest.hex())
}

/// A fresh, hidden sibling of `target` to build into before the final rename.
pub fn staging_dir(target: &Path) -> Result<PathBuf, LayoutError> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    let name = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_at(&staging))?;
    }
    Ok(staging)
}

/// What an existing output directory may hold for us to replace it: an empty
/// (or absent) directory always; otherwise only what an earlier run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaceable {
    /// An OCI image layout (`build --output`).
    Layout,
    /// An unpacked capsule tree (`build --unpacked`).
    CapsuleTree,
    /// Nothing: only an empty directory (`verify`/`pull --output`).
    Nothing,
}

impl Replaceable {
    fn allows(self, dir: &Path) -> bool {
        match fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
            Ok(true) => true,
            Ok(false) => match self {
                Self::Layout => is_layout(dir),
                Self::CapsuleTree => is_capsule_tree(dir),
                Self::Nothing => false,
            },
            Err(_) => !dir.exists(),
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Self::Layout => "an OCI image layout",
            Self::CapsuleTree => "an unpacked capsule",
            Self::Nothing => "nothing (it must be empty)",
        }
    }
}

/// Fails early when `out` holds something that is not ours to replace.
pub fn check_output(out: &Path, replaceable: Replaceable) -> Result<(), LayoutError> {
    if replaceable.allows(out) {
        Ok(())
    } else {
        Err(LayoutError::Occupied { path: out.to_owned(), replaceable })
    }
}

/// Replaces `target` with the finished `staging` directory, checking again
/// that whatever is there now is still ours to replace.
pub fn commit_dir(staging: &Path, target: &Path, replaceable: Replaceable) -> Result<(), LayoutError> {
    check_output(target, replaceable)?;
    if target.exists() {
        fs::remove_dir_all(target).map_err(io_at(target))?;
    }
    fs::rename(staging, target).map_err(io_at(target))
}

pub fn is_layout(dir: &Path) -> bool {
    dir.join(OCI_LAYOUT_FILE).is_file()
}

/// A directory that holds a capsule's top level and nothing else.
pub fn is_capsule_tree(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else { return false };
    let names: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.iter().any(|n| n == RELEASE_FILE) && names.iter().all(|n| [RELEASE_FILE, "package", "metadata"].iter().any(|k| n == *k))
}

/// A directory being written next to its target; removed on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    pub fn new(target: &Path) -> Result<Self, LayoutError> {
        Ok(Self { dir: staging_dir(target)?, target: target.to_owned(), committed: false })
    }
    /// Moves the finished directory into place, replacing only what
    /// `replaceable` allows.
    pub fn commit(mut self, replaceable: Replaceable) -> Result<(), LayoutError> {
        commit_dir(&self.dir, &self.target, replaceable)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a layout's blobs reach the disk before the layout is moved into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `build --output`: the layout outlives the run, and a crash just after
    /// the rename must not leave empty blobs under their final names.
    Synced,
    /// The scratch layout publish pushes and then deletes: syncing it only
    /// made the run wait for the disk (twice: once to write, once to free).
    Scratch,
}

/// Builds the capsule into a staged OCI image layout for `out`, tagged
/// `git-<sha>`; [`Staged::commit`] with [`Replaceable::Layout`] puts it in place.
/// `chart_layer`: also write layer 1 (the Helm chart), for a Helm package.
pub fn stage_capsule_layout(
    out: &Path,
    durability: Durability,
    r: &Release,
    package: &Package,
    docs: &Documents,
    chart_layer: bool,
) -> Result<(Staged, Built), LayoutError> {
    check_output(out, Replaceable::Layout)?;
    let staged = Staged::new(out)?;
    let built = write_into(&staged.dir, durability, r, package, docs, chart_layer)?;
    Ok((staged, built))
}

/// A blob being written under a temporary name, moved to its digest's name once complete.
fn partial_blob(path: &Path) -> Result<BufWriter<fs::File>, LayoutError> {
    Ok(BufWriter::with_capacity(256 * 1024, fs::File::create(path).map_err(io_at(path))?))
}

fn finish_blob(
    writer: BufWriter<fs::File>,
    durability: Durability,
    partial: &Path,
    dir: &Path,
    digest: &Digest,
) -> Result<(), LayoutError> {
    let file = writer.into_inner().map_err(|e| LayoutError::Io { path: partial.to_owned(), source: e.into_error() })?;
    if durability == Durability::Synced {
        file.sync_all().map_err(io_at(partial))?;
    }
    let path = blob_path(dir, digest);
    fs::rename(partial, &path).map_err(io_at(&path))
}

fn write_into(
    dir: &Path,
    durability: Durability,
    r: &Release,
    package: &Package,
    docs: &Documents,
    chart_layer: bool,
) -> Result<Built, LayoutError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
    let (partial, chart_partial) = (blobs.join(".layer.partial"), blobs.join(".chart.partial"));
    let chart_sink = if chart_layer && package.chart.is_some() { Some(partial_blob(&chart_partial)?) } else { None };
    let (built, writer, chart_writer) =
        capsule::write(r, package, docs, partial_blob(&partial)?, chart_sink, &LocalFiles).map_err(|e| match e {
            // Name the file the disk refused (layer 0 is the capsule, 1 the chart): a full
            // disk is then found where it is, in the output's or the scratch directory's.
            CapsuleError::Archive(ArchiveError::Sink { layer, source }) => {
                LayoutError::Io { path: if layer == 0 { partial.clone() } else { chart_partial.clone() }, source }
            }
            e => e.into(),
        })?;
    finish_blob(writer, durability, &partial, dir, &built.layer.digest)?;
    if let (Some(w), Some(info)) = (chart_writer, &built.chart_layer) {
        finish_blob(w, durability, &chart_partial, dir, &info.digest)?;
    }
    write_file(&blob_path(dir, &Digest::of(EMPTY_CONFIG)), EMPTY_CONFIG)?;
    write_file(&blob_path(dir, &built.digest), &built.manifest_bytes)?;
    let index = Index {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.into()),
        manifests: vec![Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.into(),
            digest: built.digest.to_string(),
            size: built.manifest_bytes.len() as u64,
            artifact_type: Some(ARTIFACT_TYPE.into()),
            annotations: [(ANN_REF_NAME.to_owned(), r.tag())].into(),
        }],
    };
    write_file(&dir.join(INDEX_FILE), &to_compact_json(&index))?;
    write_file(&dir.join(OCI_LAYOUT_FILE), OCI_LAYOUT)?;
    Ok(built)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let mut f = fs::File::create(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))
}
