//! An image layout inside a tar: one pass over its headers (seeking past the
//! contents) finds where each blob's bytes are, so uploads read those ranges
//! in place and nothing is extracted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{ImageLayoutError, TarBlobs, MAX_JSON};
use crate::layout::{INDEX_FILE, OCI_LAYOUT_FILE};

/// A tar entry name inside the layout: `./blobs/sha256/x` → `blobs/sha256/x`.
fn normalized(name: &str) -> &str {
    let mut n = name;
    while let Some(rest) = n.strip_prefix("./") {
        n = rest;
    }
    n.trim_end_matches('/')
}

/// One pass over the tar's headers (seeking past contents): where each blob
/// is, plus index.json's bytes.
pub(super) fn scan_tar(path: &Path) -> Result<(TarBlobs, Vec<u8>), ImageLayoutError> {
    let io_err = |source| ImageLayoutError::Io { path: path.to_owned(), source };
    let not_layout = |reason: String| ImageLayoutError::NotALayout { path: path.to_owned(), reason };
    let file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    if file.read_exact_at(&mut magic, 0).is_ok() && magic == [0x1f, 0x8b] {
        return Err(not_layout("it is gzip-compressed; decompress it first (gunzip), blobs are read in place from a plain tar".into()));
    }
    let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, file));
    let mut blobs = HashMap::new();
    let mut index = None;
    let mut has_layout_file = false;
    let entries = archive.entries_with_seek().map_err(|e| not_layout(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_layout(format!("not a readable tar archive ({e})")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| not_layout(format!("an entry name is not valid ({e})")))?.to_string_lossy().into_owned();
        let name = normalized(&name);
        if name == OCI_LAYOUT_FILE {
            has_layout_file = true;
        } else if name == INDEX_FILE {
            if entry.size() > MAX_JSON {
                return Err(not_layout("index.json is larger than 4 MiB".into()));
            }
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut buf).map_err(io_err)?;
            index = Some(buf);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            blobs.insert(hex.to_owned(), (entry.raw_file_position(), entry.size()));
        }
    }
    if !has_layout_file {
        return Err(not_layout("the tar has no oci-layout file".into()));
    }
    let index = index.ok_or_else(|| not_layout("the tar has no index.json".into()))?;
    Ok((blobs, index))
}
