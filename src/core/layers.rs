//! Writing a capsule's layers together. Both layers hold the package's files
//! in the same order, so each file is read, hashed and checked once, and its
//! bytes go to every layer that holds it at that point; each layer is framed
//! as tar here and compressed on a thread of its own ([`compress`]), so the
//! two deflates, the reading and the hashing all run at the same time.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::archive::{header, ArchiveEntry, ArchiveError, EntryData, Files, LayerInfo};
use super::compress;
use super::ident::Digest;

/// Tar's block: every entry's data is padded to a multiple of it.
const BLOCK: u64 = 512;
/// A file's data goes to the compressor in writes of this size (the last one
/// shorter), as the tar crate's `io::copy` (std's 8 KiB buffer) always wrote
/// it. The cuts are part of the bytes: see [`compress`].
const PIECE: usize = 8 * 1024;

/// One layer to write: its entries in archive order, and where its bytes go.
#[derive(Debug)]
pub struct LayerJob<'a, W> {
    pub entries: Vec<ArchiveEntry<'a>>,
    pub sink: W,
}

/// Writes several layers at once, each byte for byte as
/// [`super::archive::write_layer`] writes it alone. A file that the layers
/// reach at the same point (the package, in both of a capsule's layers) is
/// read, hashed and checked once and handed to each; each layer is compressed
/// on a thread of its own while the next file is read.
pub fn write_layers<W: Write + Send>(jobs: Vec<LayerJob<'_, W>>, files: &dyn Files) -> Result<Vec<(LayerInfo, W)>, ArchiveError> {
    std::thread::scope(|scope| {
        let mut layers = Vec::with_capacity(jobs.len());
        let mut workers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (sender, compressor) = compress::channel();
            workers.push(scope.spawn(move || compressor.run(job.sink)));
            layers.push(Framer { tar: tar::Builder::new(sender), entries: job.entries.into_iter().peekable(), uncompressed: 0 });
        }
        // The senders must be gone before the joins: that ends the
        // compressors' input, on success and on error alike.
        let framed: Result<Vec<u64>, ArchiveError> = match feed(&mut layers, files) {
            Ok(()) => layers.into_iter().map(Framer::finish).collect(),
            Err(e) => {
                drop(layers);
                Err(e)
            }
        };
        let compressed: Vec<_> = workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect();
        // A compressor that failed (a full disk) is why the reader's sends broke.
        let compressed = compressed
            .into_iter()
            .enumerate()
            .map(|(layer, done)| done.map_err(|source| ArchiveError::Sink { layer, source }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(framed?
            .into_iter()
            .zip(compressed)
            .map(|(uncompressed_size, (sink, digest, size))| (LayerInfo { digest, size, uncompressed_size }, sink))
            .collect())
    })
}

/// One layer's tar framing on the reader's side.
struct Framer<'a> {
    tar: tar::Builder<compress::ChunkSender>,
    entries: std::iter::Peekable<std::vec::IntoIter<ArchiveEntry<'a>>>,
    uncompressed: u64,
}

impl Framer<'_> {
    /// Appends entries up to the next file (or the end).
    fn append_until_file(&mut self) -> Result<(), ArchiveError> {
        while let Some(entry) = self.entries.next_if(|e| !matches!(e.data, EntryData::File { .. })) {
            match entry.data {
                EntryData::Dir => {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    self.tar.append_data(&mut h, format!("{}/", entry.path), io::empty()).map_err(ArchiveError::Write)?;
                }
                EntryData::Bytes(bytes) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                    self.tar.append_data(&mut h, &entry.path, bytes).map_err(ArchiveError::Write)?;
                    self.uncompressed += bytes.len() as u64;
                }
                EntryData::File { .. } => unreachable!("next_if leaves files"),
            }
        }
        Ok(())
    }

    /// Ends the tar stream and hands the rest to the compressor; returns the
    /// uncompressed size.
    fn finish(self) -> Result<u64, ArchiveError> {
        let sender = self.tar.into_inner().map_err(ArchiveError::Write)?;
        sender.finish().map_err(ArchiveError::Write)?;
        Ok(self.uncompressed)
    }

    /// The file this layer waits at: (source, size, digest).
    fn waiting_at(&mut self) -> Option<(&Path, u64, &Digest)> {
        match self.entries.peek()?.data {
            EntryData::File { source, size, sha256 } => Some((source, size, sha256)),
            _ => None,
        }
    }
}

/// Fills `buf` from `file`, short only at the end of the file.
fn fill(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads each file once for every layer that holds it at this point.
fn feed(layers: &mut [Framer<'_>], files: &dyn Files) -> Result<(), ArchiveError> {
    let mut buf = vec![0u8; compress::CHUNK];
    loop {
        for layer in layers.iter_mut() {
            layer.append_until_file()?;
        }
        let Some((source, size, sha256)) = layers.iter_mut().find_map(|l| l.waiting_at()) else {
            return Ok(());
        };
        let (source, sha256) = (source.to_owned(), sha256.clone());
        let mut readers = Vec::with_capacity(layers.len());
        for layer in layers.iter_mut() {
            if layer.waiting_at().is_some_and(|(s, z, d)| s == source && z == size && *d == sha256) {
                let entry = layer.entries.next().expect("peeked");
                // The header alone: the data follows from the one read below.
                let mut h = header(tar::EntryType::Regular, 0o644, size);
                layer.tar.append_data(&mut h, &entry.path, io::empty()).map_err(ArchiveError::Write)?;
                layer.uncompressed += size;
                readers.push(layer);
            }
        }
        let io_err = |e: io::Error| ArchiveError::Io { path: source.clone(), source: e };
        let mut file = files.open(&source).map_err(io_err)?.take(size);
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        loop {
            let n = fill(&mut file, &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
            // The pieces start at multiples of PIECE in the file, whatever the
            // reads returned: `buf` is filled whole but at the end.
            for piece in buf[..n].chunks(PIECE) {
                for layer in readers.iter_mut() {
                    layer.tar.get_mut().write_all(piece).map_err(ArchiveError::Write)?;
                }
            }
        }
        if read != size || Digest::from_hasher(hasher) != sha256 {
            return Err(ArchiveError::Changed { path: source });
        }
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        for layer in readers.iter_mut() {
            layer.tar.get_mut().write_all(&[0; BLOCK as usize][..padding as usize]).map_err(ArchiveError::Write)?;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::core::archive::{write_layer, GZIP_LEVEL};

    /// Package files in memory, by the source path an entry names.
    #[derive(Default)]
    pub(crate) struct MemoryFiles(pub(crate) HashMap<PathBuf, Vec<u8>>);

    impl Files for MemoryFiles {
        fn open(&self, source: &Path) -> io::Result<Box<dyn Read + '_>> {
            match self.0.get(source) {
                Some(bytes) => Ok(Box::new(&bytes[..])),
                None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", source.display()))),
            }
        }
    }

    /// The writer before layers were written together: the tar crate's own
    /// `append_data` straight into one encoder, a layer at a time.
    fn one_at_a_time(entries: &[ArchiveEntry<'_>], files: &MemoryFiles) -> Vec<u8> {
        let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        let mut tar = tar::Builder::new(gz);
        for e in entries {
            match e.data {
                EntryData::Dir => tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("{}/", e.path), io::empty()),
                EntryData::Bytes(b) => tar.append_data(&mut header(tar::EntryType::Regular, 0o644, b.len() as u64), &e.path, b),
                EntryData::File { source, size, .. } => {
                    let file = files.open(source).unwrap().take(size);
                    tar.append_data(&mut header(tar::EntryType::Regular, 0o644, size), &e.path, file)
                }
            }
            .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    struct Listed {
        store: MemoryFiles,
        files: Vec<(String, PathBuf, u64, Digest)>,
    }

    /// Files of awkward sizes: empty, under a block, across read pieces and chunks.
    fn files() -> Listed {
        let mut store = MemoryFiles::default();
        let sizes = [0usize, 1, 511, 512, 8193, compress::CHUNK + 3, 3 * compress::CHUNK + 8191];
        let files = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bytes: Vec<u8> = (0..n).map(|j| if i % 2 == 0 { b"key: value\n"[j % 11] } else { (j * 31 % 253) as u8 }).collect();
                let path = PathBuf::from(format!("/package/f{i}"));
                let listed = (format!("f{i}.txt"), path.clone(), n as u64, Digest::of(&bytes));
                store.0.insert(path, bytes);
                listed
            })
            .collect();
        Listed { store, files }
    }

    fn layer<'a>(files: &'a Listed, root: &str, extra: &'a [u8]) -> Vec<ArchiveEntry<'a>> {
        let mut out = vec![ArchiveEntry { path: root.into(), data: EntryData::Dir }];
        out.push(ArchiveEntry { path: format!("{root}/{}", "long".repeat(40)), data: EntryData::Bytes(extra) });
        out.extend(files.files.iter().map(|(name, source, size, sha256)| ArchiveEntry {
            path: format!("{root}/{name}"),
            data: EntryData::File { source, size: *size, sha256 },
        }));
        out
    }

    #[test]
    fn layers_written_together_are_byte_for_byte_those_written_alone() {
        let files = files();
        let extra = vec![7u8; 20_000];
        let (a, b) = (layer(&files, "package/helm", b"metadata"), layer(&files, "chart", &extra));
        let expected = [one_at_a_time(&a, &files.store), one_at_a_time(&b, &files.store)];
        let jobs = vec![LayerJob { entries: a, sink: Vec::new() }, LayerJob { entries: b, sink: Vec::new() }];
        let written = write_layers(jobs, &files.store).unwrap();
        for ((info, bytes), expected) in written.iter().zip(&expected) {
            assert!(bytes == expected, "a layer written beside another differs from the one-layer writer's");
            assert_eq!((&info.digest, info.size), (&Digest::of(expected), expected.len() as u64));
        }
        let total: u64 = files.files.iter().map(|f| f.2).sum();
        assert_eq!(written[1].0.uncompressed_size, total + extra.len() as u64);
    }

    #[test]
    fn a_file_that_changed_since_it_was_scanned_is_refused() {
        let files = files();
        let mut wrong = files.files.clone();
        wrong[5].3 = Digest::of(b"something else");
        let changed = Listed { store: MemoryFiles::default(), files: wrong };
        let err = write_layer(layer(&changed, "a", b""), Vec::new(), &files.store).unwrap_err();
        assert!(matches!(&err, ArchiveError::Changed { path } if *path == files.files[5].1), "{err:?}");
        let mut longer = files.files.clone();
        longer[3].2 += 1;
        let grew = Listed { store: MemoryFiles::default(), files: longer };
        let err = write_layer(layer(&grew, "a", b""), Vec::new(), &files.store).unwrap_err();
        assert!(matches!(&err, ArchiveError::Changed { path } if *path == files.files[3].1), "{err:?}");
    }

    /// A sink that fails once it has taken `left` bytes, as a full disk does.
    #[derive(Debug)]
    struct FullDisk {
        left: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that panics at its first write, as a bug in a compressor would
    /// (once: the encoder's drop writes again while the thread unwinds).
    #[derive(Debug, Default)]
    struct Panics {
        panicked: bool,
    }

    impl Write for Panics {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !std::mem::replace(&mut self.panicked, true) {
                panic!("compressor bug")
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A compressor thread that panics stops the build with its panic: the
    /// reader, blocked on its full queue or not, is not left waiting, and the
    /// other layer's compressor ends with it.
    #[test]
    fn a_compressor_that_panics_stops_the_build_instead_of_hanging_it() {
        let files = files();
        let jobs: Vec<LayerJob<'_, Box<dyn Write + Send>>> = vec![
            LayerJob { entries: layer(&files, "a", b""), sink: Box::new(Vec::new()) },
            LayerJob { entries: layer(&files, "b", b""), sink: Box::new(Panics::default()) },
        ];
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_layers(jobs, &files.store)));
        let Err(panic) = outcome else { panic!("the compressor's panic did not reach the caller") };
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"compressor bug"));
    }

    #[test]
    fn a_sink_that_fails_is_the_error_reported() {
        let files = files();
        let jobs = vec![
            LayerJob { entries: layer(&files, "a", b""), sink: FullDisk { left: usize::MAX } },
            LayerJob { entries: layer(&files, "b", b""), sink: FullDisk { left: 1000 } },
        ];
        let err = write_layers(jobs, &files.store).unwrap_err();
        assert!(matches!(&err, ArchiveError::Sink { layer: 1, source } if source.kind() == io::ErrorKind::StorageFull), "{err:?}");
    }
}
