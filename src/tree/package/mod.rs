//! A package directory read from the local file system: its `.helmignore`,
//! the walk ([`walk`]), each file hashed as it is listed, and the texts
//! `core::package::check` asks for. The rules are the core's; this module
//! only reads.

mod walk;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use self::walk::Walker;
use crate::core::ident::{hex, Digest};
use crate::core::package::{self, HelmIgnore, Listing, Package, PackageError, PackageFile, PackageKind};

/// Reads and checks the package at `root`.
pub fn scan(root: &Path, kind: PackageKind) -> Result<Package, PackageError> {
    let meta = fs::metadata(root).map_err(|_| PackageError::NotFound { path: root.to_owned() })?;
    if !meta.is_dir() {
        return Err(PackageError::NotADirectory { path: root.to_owned() });
    }
    let real_root = fs::canonicalize(root).map_err(|source| PackageError::Io { path: root.to_owned(), source })?;
    let ignore = match kind {
        PackageKind::Helm => match fs::read_to_string(root.join(".helmignore")) {
            Ok(text) => HelmIgnore::parse(&text).map_err(PackageError::HelmIgnore)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HelmIgnore::defaults(),
            Err(source) => return Err(PackageError::Io { path: root.join(".helmignore"), source }),
        },
        PackageKind::Kustomize => HelmIgnore::default(),
    };
    let mut walker = Walker { real_root, ignore, listing: Listing::default(), ancestors: HashSet::new() };
    walker.walk_dir(root, "")?;
    let read_text = |f: &PackageFile| {
        fs::read(&f.source)
            .map_err(|source| PackageError::Io { path: f.source.clone(), source })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    package::check(kind, walker.listing, &read_text)
}

pub(crate) struct FileHashes {
    pub sha256: Digest,
    pub sha1: String,
    /// Bytes actually read, to catch a file that changed since it was listed.
    pub size: u64,
}

/// One read of a file, both hashes.
pub(crate) fn hash_file(path: &Path) -> Result<FileHashes, PackageError> {
    let io = |source| PackageError::Io { path: path.to_owned(), source };
    let mut file = fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut h1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        h1.update(&buf[..n]);
        total += n as u64;
    }
    Ok(FileHashes { sha256: Digest::from_hasher(h), sha1: hex(&h1.finalize()), size: total })
}
