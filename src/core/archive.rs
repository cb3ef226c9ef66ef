//! The capsule archive (spec section 2): a gzip'd tar whose bytes depend only on
//! entry names and contents. Headers are normalized; file contents stream from
//! where the package was found ([`Files`]), so memory stays flat whatever the
//! package size.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ident::Digest;
use super::layers::{self, LayerJob};

/// Where a package file's bytes come from when a layer is written: the core's
/// one port for reading them (the local file system's is
/// `tree::LocalFiles`; tests may serve memory).
pub trait Files: Sync {
    fn open(&self, source: &Path) -> io::Result<Box<dyn Read + '_>>;
}

/// Part of the format: a change here changes every capsule digest.
pub const GZIP_LEVEL: u32 = 6;

#[derive(Debug)]
pub enum EntryData<'a> {
    Dir,
    Bytes(&'a [u8]),
    /// A file read at write time; its size and digest were taken when the
    /// package was scanned, and a file that changed since is an error.
    File {
        source: &'a Path,
        size: u64,
        sha256: &'a Digest,
    },
}

#[derive(Debug)]
pub struct ArchiveEntry<'a> {
    /// Relative, `/`-separated, without a trailing slash.
    pub path: String,
    pub data: EntryData<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    pub uncompressed_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: cannot be archived")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: changed while the capsule was being built; build again from a tree nothing is writing to")]
    Changed { path: PathBuf },
    #[error("writing the capsule layer failed")]
    Write(#[source] io::Error),
    /// Where layer `layer` (its index in the jobs given) was being written
    /// refused the bytes: a full disk, a file size limit. The caller knows
    /// which file that is and names it.
    #[error("writing capsule layer {layer} failed")]
    Sink {
        layer: usize,
        #[source]
        source: io::Error,
    },
}

/// Counts and hashes what passes through to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), written: 0 }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Writes `entries`, already in archive order, as a gzip'd tar into `sink`;
/// file entries are read from `files`.
pub fn write_layer<'a, W: Write + Send>(
    entries: impl IntoIterator<Item = ArchiveEntry<'a>>,
    sink: W,
    files: &dyn Files,
) -> Result<(LayerInfo, W), ArchiveError> {
    let mut written = layers::write_layers(vec![LayerJob { entries: entries.into_iter().collect(), sink }], files)?;
    Ok(written.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'a>(long: &'a str) -> Vec<ArchiveEntry<'a>> {
        vec![
            ArchiveEntry { path: "a".into(), data: EntryData::Dir },
            ArchiveEntry { path: "a/b.txt".into(), data: EntryData::Bytes(b"hello\n") },
            ArchiveEntry { path: long.into(), data: EntryData::Bytes(b"x") },
        ]
    }

    #[test]
    fn headers_are_normalized() {
        let long = format!("a/{}", "n".repeat(120));
        let none = crate::core::layers::tests::MemoryFiles::default();
        let (info, bytes) = write_layer(entries(&long), Vec::new(), &none).unwrap();
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.digest, Digest::of(&bytes));
        // gzip header: magic, deflate, no flags (no name/comment), mtime 0.
        assert_eq!(&bytes[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let seen: Vec<(String, u32, u64, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(seen[0], ("a/".into(), 0o755, 0, 0, 0));
        assert_eq!(seen[1], ("a/b.txt".into(), 0o644, 0, 0, 0));
        assert_eq!(seen[2].0, long);
        let again = write_layer(entries(&long), Vec::new(), &none).unwrap().1;
        assert_eq!(bytes, again);
    }
}
