//! Unpacked trees on the local file system: [`core::unpack`](crate::core::unpack)'s
//! checked entries written under one output directory, which must be new or
//! empty and must not be a symbolic link (a link planted there would carry
//! every write elsewhere). Files are created, never opened if they exist.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::core::unpack::{unpack_into, Sink, UnpackError, UnpackedFile};

/// Unpacks the gzip'd tar read from `layer` into `out`, which must not exist
/// or be empty. Returns every file with its size and sha256.
pub fn unpack(layer: impl Read, out: &Path) -> Result<Vec<UnpackedFile>, UnpackError> {
    unpack_until(layer, out, &AtomicBool::new(false))
}

/// [`unpack`], ending with [`UnpackError::Stopped`] at the first read after
/// `stop` is set.
pub fn unpack_until(layer: impl Read, out: &Path, stop: &AtomicBool) -> Result<Vec<UnpackedFile>, UnpackError> {
    if fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(UnpackError::OutputIsLink { dir: out.to_owned() });
    }
    match fs::read_dir(out) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(UnpackError::OutputNotEmpty { dir: out.to_owned() });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(out).map_err(|source| write_error(out, source))?,
        Err(e) => return Err(write_error(out, e)),
    }
    unpack_into(layer, &mut Directory { root: out.to_owned() }, stop)
}

/// The output directory as a [`Sink`].
struct Directory {
    root: PathBuf,
}

fn write_error(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Write { path: path.to_owned(), source }
}

impl Sink for Directory {
    type File = fs::File;

    fn dir(&mut self, name: &str) -> Result<(), UnpackError> {
        let dest = self.root.join(name);
        fs::create_dir(&dest).map_err(|e| write_error(&dest, e))
    }

    fn file(&mut self, name: &str) -> Result<fs::File, UnpackError> {
        let dest = self.root.join(name);
        fs::OpenOptions::new().write(true).create_new(true).open(&dest).map_err(|e| write_error(&dest, e))
    }

    fn write_error(&self, name: &str, source: io::Error) -> UnpackError {
        write_error(&self.root.join(name), source)
    }
}

#[cfg(test)]
pub(crate) mod tests;
