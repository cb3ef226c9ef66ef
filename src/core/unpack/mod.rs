//! Unpacking a capsule archive that came from somewhere else. Everything spec
//! section 2 forbids is refused, sizes and entries are counted as they arrive
//! (headers are not trusted, and the entry past the limit is never written),
//! and only checked names reach the [`Sink`] that writes the tree (the file
//! system's is `tree::unpack`, which keeps every write inside the output
//! directory). A caller that gives up (a request that timed out) can stop an
//! unpack between two reads.
//!
//! The archive must also read the same here as in Kargo's `untar` (Go's
//! archive/tar behind a multi-member gzip reader), or a capsule could verify
//! as one tree and deploy as another. So every gzip member is read, tar
//! extensions that change how later bytes are read (pax headers, GNU sparse
//! maps) are refused rather than interpreted, and nothing but zero padding may
//! follow the end of the archive.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::archive::HashingWriter;
use super::ident::Digest;
use super::package::{MAX_ENTRIES, MAX_FILE_SIZE, MAX_TOTAL_SIZE};

/// Room for tar headers and padding on top of the content limit.
const MAX_DECOMPRESSED: u64 = MAX_TOTAL_SIZE + 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("output directory {dir}: already exists and is not empty; give a new or empty directory")]
    OutputNotEmpty { dir: PathBuf },
    #[error("output directory {dir}: is a symbolic link; give a real directory")]
    OutputIsLink { dir: PathBuf },
    #[error("archive entry {path:?}: {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error("archive entry {path:?}: is a {kind}; a capsule holds only regular files and directories")]
    Forbidden { path: String, kind: String },
    #[error("archive entry {path:?}: more than the 50 MiB per-file limit")]
    FileTooLarge { path: String },
    #[error("archive: expands to more than the 100 MiB limit (a compression bomb, or not a capsule)")]
    TooLarge,
    #[error(
        "archive: holds more than {MAX_ENTRIES} entries (files and directories), the limit of a capsule layer; nothing past it was written"
    )]
    TooManyEntries,
    #[error("unpacking was stopped: what it was for was given up")]
    Stopped,
    #[error("archive entry {path:?}: its header says {declared} bytes but the archive holds {read}")]
    Truncated { path: String, declared: u64, read: u64 },
    #[error("archive: data follows the end-of-archive marker; a capsule archive ends there")]
    TrailingData,
    #[error("archive: is not a valid gzip'd tar")]
    Corrupt(#[source] io::Error),
    #[error("{path}: cannot be written")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedFile {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
}

/// Where an unpacked tree goes. Names are checked before they get here: relative,
/// `/`-separated, no `.` or `..` segment, each parent given by [`Sink::dir`] first.
pub trait Sink {
    type File: Write;
    fn dir(&mut self, name: &str) -> Result<(), UnpackError>;
    /// A new file (never an existing one).
    fn file(&mut self, name: &str) -> Result<Self::File, UnpackError>;
    /// The error for a failed write into `name`'s file.
    fn write_error(&self, name: &str, source: io::Error) -> UnpackError;
}

/// Stops the decompressor once it has produced more than `left` bytes.
struct Budget<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| io::Error::other(Halt::Bomb))?;
        Ok(n)
    }
}

/// Fails every read once `stop` is set.
struct Stoppable<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other(Halt::Stopped));
        }
        self.inner.read(buf)
    }
}

/// Why a reader under the decompressor refused to go on; carried through the
/// tar reader inside an `io::Error`, and told apart from corruption here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Halt {
    #[error("decompressed size limit reached")]
    Bomb,
    #[error("stopped")]
    Stopped,
}

fn corrupt(e: io::Error) -> UnpackError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Halt>()) {
        Some(Halt::Bomb) => UnpackError::TooLarge,
        Some(Halt::Stopped) => UnpackError::Stopped,
        None => UnpackError::Corrupt(e),
    }
}

/// Checks an entry name against spec section 2 and returns it without a
/// trailing slash.
fn checked_name(raw: &[u8], is_dir: bool) -> Result<String, UnpackError> {
    let lossy = String::from_utf8_lossy(raw).into_owned();
    let unsafe_ = |reason| UnpackError::Unsafe { path: lossy.clone(), reason };
    let name = std::str::from_utf8(raw).map_err(|_| unsafe_("the name is not UTF-8"))?;
    if name.starts_with('/') {
        return Err(unsafe_("absolute paths are not allowed"));
    }
    if name.starts_with("./") {
        return Err(unsafe_("names must not start with ./"));
    }
    if name.contains('\\') {
        return Err(unsafe_("backslashes are not allowed"));
    }
    if name.contains('\0') {
        // Only a GNU long name can hold one; Go's reader ends the name there, so
        // Kargo would unpack another path than this one.
        return Err(unsafe_("NUL bytes are not allowed in names"));
    }
    if name.contains(['\n', '\r']) {
        // The package tree digest is one line per file: a line break in a name forges lines.
        return Err(unsafe_("line breaks are not allowed in names"));
    }
    let name = if is_dir { name.strip_suffix('/').unwrap_or(name) } else { name };
    if name.is_empty() || name.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(unsafe_("empty, '.' or '..' path segments are not allowed"));
    }
    Ok(name.to_owned())
}

/// Unpacks the gzip'd tar read from `layer` into `sink`, ending with
/// [`UnpackError::Stopped`] at the first read after `stop` is set. Returns
/// every file with its size and sha256.
pub fn unpack_into<S: Sink>(layer: impl Read, sink: &mut S, stop: &AtomicBool) -> Result<Vec<UnpackedFile>, UnpackError> {
    // Go's gzip reader reads every member, so a second member is part of the archive.
    let gz = flate2::read::MultiGzDecoder::new(Stoppable { inner: layer, stop });
    let mut archive = tar::Archive::new(Budget { inner: gz, left: MAX_DECOMPRESSED });
    let files = unpack_entries(&mut archive, sink, stop)?;
    // After the end-of-archive block only zero padding may follow: Go's reader
    // refuses a zero block followed by a header, where the tar crate would stop.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(UnpackError::TrailingData);
        }
    }
    Ok(files)
}

fn unpack_entries<R: Read, S: Sink>(
    archive: &mut tar::Archive<R>,
    sink: &mut S,
    stop: &AtomicBool,
) -> Result<Vec<UnpackedFile>, UnpackError> {
    let mut dirs: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for (index, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(UnpackError::TooManyEntries);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(UnpackError::Stopped);
        }
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        let raw_path = entry.path_bytes().into_owned();
        let lossy = || String::from_utf8_lossy(&raw_path).into_owned();
        if !(is_dir || kind.is_file()) {
            return Err(UnpackError::Forbidden { path: lossy(), kind: kind_name(kind) });
        }
        // The tar crate applies a pax header's path and size to the entry after
        // it; other readers apply other keys (sparse maps). Refuse them all.
        if entry.pax_extensions().map_err(corrupt)?.is_some() {
            return Err(UnpackError::Forbidden { path: lossy(), kind: "entry with a pax extended header".into() });
        }
        let name = checked_name(&raw_path, is_dir)?;
        if !seen.insert(name.clone()) {
            return Err(UnpackError::Unsafe { path: name, reason: "the archive holds this name twice" });
        }
        if let Some((parent, _)) = name.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(UnpackError::Unsafe { path: name, reason: "its parent directory has no entry before it" });
            }
        }
        if is_dir {
            sink.dir(&name)?;
            dirs.insert(name);
            continue;
        }
        if entry.header().size().unwrap_or(u64::MAX) > MAX_FILE_SIZE {
            return Err(UnpackError::FileTooLarge { path: name });
        }
        let declared = entry.size();
        let mut file = HashingWriter::new(sink.file(&name)?);
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            total += n as u64;
            if size > MAX_FILE_SIZE {
                return Err(UnpackError::FileTooLarge { path: name });
            }
            if total > MAX_TOTAL_SIZE {
                return Err(UnpackError::TooLarge);
            }
            file.write_all(&buf[..n]).map_err(|e| sink.write_error(&name, e))?;
        }
        if size != declared {
            return Err(UnpackError::Truncated { path: name, declared, read: size });
        }
        let (_, sha256, _) = file.finish();
        files.push(UnpackedFile { path: name, size, sha256 });
    }
    Ok(files)
}

fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symlink".into(),
        tar::EntryType::Link => "hardlink".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        tar::EntryType::GNUSparse => "GNU sparse file".into(),
        tar::EntryType::XGlobalHeader => "pax global header".into(),
        tar::EntryType::XHeader => "pax extended header".into(),
        tar::EntryType::GNULongName | tar::EntryType::GNULongLink => "GNU long name outside a GNU or ustar header".into(),
        tar::EntryType::Continuous => "contiguous file".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}
