//! Reading an app image from an OCI image layout, as `docker buildx build
//! --output type=oci` writes it: a directory, or the same tree in a tar.
//!
//! Nothing is extracted or loaded whole. For a tar, one pass over its headers
//! records where each blob's bytes start and how long they are; uploads then
//! read those ranges straight from the tar. Only index.json and manifests
//! (small JSON, size-capped) are read into memory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::ident::Digest;
use crate::core::manifest::{Descriptor, ANN_REF_NAME, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::layout::{INDEX_FILE, OCI_LAYOUT_FILE};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_JSON: u64 = 4 * 1024 * 1024;
/// Indexes nest (an index of indexes); deeper than this is not an image.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ImageLayoutError {
    #[error("--image-layout {path}: cannot be read")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--image-layout {path}: is not an OCI image layout: {reason}")]
    NotALayout { path: PathBuf, reason: String },
    #[error("--image-layout {path}: index.json names {count} images and none is tagged {tag:?} (org.opencontainers.image.ref.name); the names are: {names}; build with --output type=oci,name=<image>:{tag}, or give a layout with one image")]
    Ambiguous { path: PathBuf, count: usize, tag: String, names: String },
    #[error("--image-layout {path}: index.json names no image")]
    Empty { path: PathBuf },
    #[error("--image-layout {path}: blob {digest} ({what}) is missing; the layout is incomplete")]
    MissingBlob { path: PathBuf, digest: String, what: String },
    #[error("--image-layout {path}: blob {digest} is {actual} bytes, but its descriptor says {expected}; the layout is corrupt")]
    SizeMismatch { path: PathBuf, digest: String, expected: u64, actual: u64 },
    #[error("--image-layout {path}: {what} {digest}: {reason}")]
    BadDocument { path: PathBuf, what: String, digest: String, reason: String },
}

/// Where a blob's bytes are: a whole file, or a range of the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    pub file: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// hex digest → (offset, size) inside the tar.
type TarBlobs = HashMap<String, (u64, u64)>;

#[derive(Debug)]
enum Storage {
    Dir,
    Tar(TarBlobs),
}

#[derive(Debug)]
pub struct ImageLayout {
    path: PathBuf,
    storage: Storage,
    index: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A manifest or index, as far as pushing needs to know.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A manifest or index to PUT, as its exact bytes.
#[derive(Debug, Clone)]
pub struct ManifestBlob {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// Everything one image needs in the registry: blobs (configs, layers) to
/// upload first, then manifests, children before the index that names them.
#[derive(Debug)]
pub struct PushPlan {
    pub root: ManifestBlob,
    pub blobs: Vec<(Digest, BlobLocation)>,
    /// Child manifests (of an index), in an order where each comes before its parent.
    pub children: Vec<ManifestBlob>,
}

impl PushPlan {
    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, l)| l.size).sum()
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX_MEDIA_TYPE || media_type == DOCKER_MANIFEST_LIST
}

fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST_MEDIA_TYPE || media_type == DOCKER_MANIFEST
}

impl ImageLayout {
    pub fn open(path: &Path) -> Result<Self, ImageLayoutError> {
        let io_err = |source| ImageLayoutError::Io { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let not_layout = |reason: &str| ImageLayoutError::NotALayout { path: path.to_owned(), reason: reason.to_owned() };
        let (storage, index_bytes) = if meta.is_dir() {
            if !path.join(OCI_LAYOUT_FILE).is_file() {
                return Err(not_layout("there is no oci-layout file"));
            }
            let index = read_capped(&path.join(INDEX_FILE), MAX_JSON).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_layout("there is no index.json"),
                _ => ImageLayoutError::Io { path: path.join(INDEX_FILE), source: e },
            })?;
            (Storage::Dir, index)
        } else {
            let (blobs, index) = in_tar::scan_tar(path)?;
            (Storage::Tar(blobs), index)
        };
        let doc: IndexDoc = serde_json::from_slice(&index_bytes).map_err(|e| not_layout(&format!("index.json does not parse: {e}")))?;
        Ok(Self { path: path.to_owned(), storage, index: doc.manifests })
    }

    /// The image to push: the only one in index.json, or the one tagged `tag`.
    pub fn select(&self, tag: &str) -> Result<&Descriptor, ImageLayoutError> {
        match self.index.as_slice() {
            [] => Err(ImageLayoutError::Empty { path: self.path.clone() }),
            [only] => Ok(only),
            many => {
                // buildx writes the bare tag or the full reference (`name=repo:tag`).
                let matches = |d: &&Descriptor| {
                    d.annotations.get(ANN_REF_NAME).is_some_and(|n| n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag))
                };
                let found: Vec<&Descriptor> = many.iter().filter(matches).collect();
                let distinct: HashSet<&str> = found.iter().map(|d| d.digest.as_str()).collect();
                match (found.first(), distinct.len()) {
                    (Some(d), 1) => Ok(d),
                    _ => Err(ImageLayoutError::Ambiguous {
                        path: self.path.clone(),
                        count: many.len(),
                        tag: tag.to_owned(),
                        names: many
                            .iter()
                            .map(|d| format!("{} ({})", d.annotations.get(ANN_REF_NAME).map_or("untagged", String::as_str), d.digest))
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    }

    /// Where the bytes of `digest` are, checked against the size the descriptor gives.
    pub fn locate(&self, digest: &str, expected_size: u64, what: &str) -> Result<(Digest, BlobLocation), ImageLayoutError> {
        let missing = || ImageLayoutError::MissingBlob { path: self.path.clone(), digest: digest.to_owned(), what: what.to_owned() };
        let parsed: Digest = digest.parse().map_err(|_| ImageLayoutError::BadDocument {
            path: self.path.clone(),
            what: what.to_owned(),
            digest: digest.to_owned(),
            reason: "only sha256 digests are supported".into(),
        })?;
        let loc = match &self.storage {
            Storage::Dir => {
                let file = crate::layout::blob_path(&self.path, &parsed);
                let size = std::fs::metadata(&file).map_err(|_| missing())?.len();
                BlobLocation { file, offset: 0, size }
            }
            Storage::Tar(blobs) => {
                let (offset, size) = *blobs.get(parsed.hex()).ok_or_else(missing)?;
                BlobLocation { file: self.path.clone(), offset, size }
            }
        };
        if loc.size != expected_size {
            return Err(ImageLayoutError::SizeMismatch {
                path: self.path.clone(),
                digest: digest.to_owned(),
                expected: expected_size,
                actual: loc.size,
            });
        }
        Ok((parsed, loc))
    }

    /// A small JSON blob (manifest, index, config), read whole and digest-checked.
    pub fn read_json_blob(&self, d: &Descriptor, what: &str) -> Result<Vec<u8>, ImageLayoutError> {
        let bad = |reason: String| ImageLayoutError::BadDocument {
            path: self.path.clone(),
            what: what.to_owned(),
            digest: d.digest.clone(),
            reason,
        };
        if d.size > MAX_JSON {
            return Err(bad(format!("{} bytes is more than a {what} can be", d.size)));
        }
        let (digest, loc) = self.locate(&d.digest, d.size, what)?;
        let file = File::open(&loc.file).map_err(|source| ImageLayoutError::Io { path: loc.file.clone(), source })?;
        let mut buf = vec![0u8; loc.size as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|source| ImageLayoutError::Io { path: loc.file.clone(), source })?;
        let actual = Digest::of(&buf);
        if actual != digest {
            return Err(bad(format!("its content hashes to {actual}; the layout is corrupt")));
        }
        Ok(buf)
    }

    /// Reads the image graph under `root` into what to upload, in order.
    pub fn plan(&self, root: &Descriptor) -> Result<PushPlan, ImageLayoutError> {
        let mut blobs = Vec::new();
        let mut seen_blobs = HashSet::new();
        let mut children = Vec::new();
        let root = self.walk(root, 0, &mut blobs, &mut seen_blobs, &mut children)?;
        Ok(PushPlan { root, blobs, children })
    }

    fn walk(
        &self,
        d: &Descriptor,
        depth: usize,
        blobs: &mut Vec<(Digest, BlobLocation)>,
        seen: &mut HashSet<String>,
        children: &mut Vec<ManifestBlob>,
    ) -> Result<ManifestBlob, ImageLayoutError> {
        let what = if is_index(&d.media_type) { "index" } else { "manifest" };
        let bad = |reason: String| ImageLayoutError::BadDocument {
            path: self.path.clone(),
            what: what.to_owned(),
            digest: d.digest.clone(),
            reason,
        };
        if depth > MAX_DEPTH {
            return Err(bad("indexes nest too deep".into()));
        }
        let bytes = self.read_json_blob(d, what)?;
        let node: Node = serde_json::from_slice(&bytes).map_err(|e| bad(format!("does not parse: {e}")))?;
        let media_type = if d.media_type.is_empty() { node.media_type.clone().unwrap_or_default() } else { d.media_type.clone() };
        if is_index(&media_type) {
            for child in &node.manifests {
                if !seen.insert(child.digest.clone()) {
                    continue;
                }
                let m = self.walk(child, depth + 1, blobs, seen, children)?;
                children.push(m);
            }
        } else if is_manifest(&media_type) {
            let config = node.config.as_ref().ok_or_else(|| bad("has no config".into()))?;
            for (blob, role) in std::iter::once((config, "config")).chain(node.layers.iter().map(|l| (l, "layer"))) {
                if seen.insert(blob.digest.clone()) {
                    blobs.push(self.locate(&blob.digest, blob.size, role)?);
                }
            }
        } else {
            return Err(bad(format!("media type {media_type:?} is neither an OCI/Docker manifest nor an index")));
        }
        Ok(ManifestBlob { digest: Digest::of(&bytes), media_type, bytes })
    }
}

fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("more than {max} bytes")));
    }
    Ok(buf)
}

mod in_tar;
#[cfg(test)]
mod tests;
