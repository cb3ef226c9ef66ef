//! The walk of a package directory: names checked, links followed only
//! inside the root, ignored paths left out, files hashed, and the limits of
//! spec section 2 (sizes, entries) enforced as the walk goes.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{hash_file, FileHashes};
use crate::core::package::{
    check_name, HelmIgnore, Listing, PackageEntry, PackageError, PackageFile, MAX_FILE_SIZE, MAX_PACKAGE_ENTRIES, MAX_TOTAL_SIZE, VCS_DIRS,
};

pub(super) struct Walker {
    pub(super) real_root: PathBuf,
    pub(super) ignore: HelmIgnore,
    pub(super) listing: Listing,
    /// Canonical paths of the directories being walked, to catch link loops.
    pub(super) ancestors: HashSet<PathBuf>,
}

impl Walker {
    pub(super) fn walk_dir(&mut self, dir: &Path, rel_dir: &str) -> Result<(), PackageError> {
        let io = |source| PackageError::Io { path: dir.to_owned(), source };
        let real = fs::canonicalize(dir).map_err(io)?;
        if !self.ancestors.insert(real.clone()) {
            return Err(PackageError::SymlinkLoop { rel: rel_dir.to_owned() });
        }
        let mut children = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().into_string().map_err(|_| PackageError::NonUtf8Name { path: entry.path() })?;
            children.push(name);
        }
        // Byte-wise order, independent of the order the file system returns.
        children.sort_unstable();
        for name in children {
            let rel = if rel_dir.is_empty() { name.clone() } else { format!("{rel_dir}/{name}") };
            let path = dir.join(&name);
            let link_meta = fs::symlink_metadata(&path).map_err(|source| PackageError::Io { path: path.clone(), source })?;
            let meta = if link_meta.file_type().is_symlink() { self.resolve_link(&path, &rel)? } else { link_meta };
            let is_dir = meta.is_dir();
            if VCS_DIRS.contains(&name.as_str()) || self.ignore.ignores(&rel, is_dir) {
                continue;
            }
            self.listing.counted += 1;
            if self.listing.counted > MAX_PACKAGE_ENTRIES {
                // Past the limit nothing is read or kept: the rest is only
                // counted, so the error can say how many there are.
                if is_dir {
                    self.walk_dir(&path, &rel)?;
                }
                continue;
            }
            check_name(&rel)?;
            if is_dir {
                self.listing.entries.push(PackageEntry::Dir { path: rel.clone() });
                self.walk_dir(&path, &rel)?;
            } else if meta.is_file() {
                let size = meta.len();
                if size > MAX_FILE_SIZE {
                    return Err(PackageError::FileTooLarge { rel, size });
                }
                self.listing.total += size;
                if self.listing.total > MAX_TOTAL_SIZE {
                    return Err(PackageError::TotalTooLarge { size: self.listing.total });
                }
                let FileHashes { sha256, sha1, size: read } = hash_file(&path)?;
                if read != size {
                    return Err(PackageError::Io { path, source: std::io::Error::other("the file changed while it was read") });
                }
                self.listing.entries.push(PackageEntry::File(PackageFile { path: rel, source: path, size, sha256, sha1 }));
            } else {
                return Err(PackageError::SpecialFile { rel, what: special_kind(&meta) });
            }
        }
        self.ancestors.remove(&real);
        Ok(())
    }

    /// A link is followed only when its target stays inside the package root.
    fn resolve_link(&self, path: &Path, rel: &str) -> Result<fs::Metadata, PackageError> {
        let target = fs::read_link(path).map_err(|source| PackageError::Io { path: path.to_owned(), source })?;
        let real = fs::canonicalize(path).map_err(|_| PackageError::SymlinkDangles { rel: rel.to_owned(), target: target.clone() })?;
        if !real.starts_with(&self.real_root) {
            return Err(PackageError::SymlinkEscapes { rel: rel.to_owned(), target });
        }
        fs::metadata(&real).map_err(|source| PackageError::Io { path: path.to_owned(), source })
    }
}

fn special_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}
