//! A layer's gzip compressor on a thread of its own. The archive writer
//! frames the tar stream and hands it over in large chunks; deflate, by far
//! the most expensive step, then runs beside the reading and beside the other
//! layer's compressor.
//!
//! The compressor replays the writer's calls one for one: zlib-rs (like
//! zlib-ng, whose port it is) chooses matches by how much input it holds at
//! each call, so the same stream cut into other writes gives other bytes. The
//! cuts are therefore part of the format (spec section 2), and the output is
//! exactly that of the writer's calls made on one `GzEncoder` on one thread.

use std::io::{self, Write};
use std::mem;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use flate2::{Compression, GzBuilder};

use super::archive::{HashingWriter, GZIP_LEVEL};
use super::ident::Digest;

/// Tar bytes handed over at a time: few, large messages.
pub const CHUNK: usize = 256 * 1024;
/// Chunks queued per compressor. With the one being filled and the one being
/// compressed, at most `DEPTH + 2` chunks (1.5 MiB) per layer are in memory.
const DEPTH: usize = 4;

/// Bytes, and where each of the writes that made them ended.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Chunk {
    fn new() -> Self {
        Self { bytes: Vec::with_capacity(CHUNK), ends: Vec::with_capacity(CHUNK / 512) }
    }
}

/// The reader's end: a `Write` that records each write and queues them, in
/// chunks, for the compressor.
pub struct ChunkSender {
    chunk: Chunk,
    queue: SyncSender<Chunk>,
    /// Chunks the compressor is done with, to fill again instead of allocating.
    spare: Receiver<Chunk>,
}

/// The compressor's end, to run on its own thread with [`Compressor::run`].
pub struct Compressor {
    queue: Receiver<Chunk>,
    spare: Sender<Chunk>,
}

/// A connected sender and compressor.
pub fn channel() -> (ChunkSender, Compressor) {
    let (queue_tx, queue_rx) = mpsc::sync_channel(DEPTH);
    let (spare_tx, spare_rx) = mpsc::channel();
    (ChunkSender { chunk: Chunk::new(), queue: queue_tx, spare: spare_rx }, Compressor { queue: queue_rx, spare: spare_tx })
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let next = self.spare.try_recv().unwrap_or_else(|_| Chunk::new());
        let full = mem::replace(&mut self.chunk, next);
        self.queue.send(full).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer's compressor stopped"))
    }

    /// Queues what is left; dropping the sender then ends the compressor's input.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunk.ends.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

impl Write for ChunkSender {
    /// Takes the whole of `buf`, as one write: a write is never split.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.chunk.bytes.is_empty() && self.chunk.bytes.len() + buf.len() > CHUNK {
            self.send()?;
        }
        self.chunk.bytes.extend_from_slice(buf);
        self.chunk.ends.push(self.chunk.bytes.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Compressor {
    /// Compresses everything queued until the sender is dropped, into `sink`:
    /// gzip with mtime 0 and no name, at [`GZIP_LEVEL`], one `write_all` per
    /// write the sender took. Returns the sink, and the digest and size of
    /// what was written to it.
    pub fn run<W: Write>(self, sink: W) -> io::Result<(W, Digest, u64)> {
        let mut gz = GzBuilder::new().mtime(0).write(HashingWriter::new(sink), Compression::new(GZIP_LEVEL));
        for mut chunk in self.queue {
            let mut start = 0;
            for &end in &chunk.ends {
                gz.write_all(&chunk.bytes[start..end])?;
                start = end;
            }
            chunk.bytes.clear();
            chunk.ends.clear();
            // The reader may be done and gone; then the chunk is simply freed.
            let _ = self.spare.send(chunk);
        }
        Ok(gz.finish()?.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_thread(writes: &[&[u8]]) -> Vec<u8> {
        let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::new(GZIP_LEVEL));
        for w in writes {
            gz.write_all(w).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn same_bytes_as_the_same_writes_on_one_thread() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345).map(|i| (i * 7 % 251) as u8 ^ (i / 1000) as u8).collect();
        // Odd sizes, and one write larger than a chunk.
        let mut writes: Vec<&[u8]> = data[..2 * CHUNK].chunks(10_007).collect();
        writes.push(&data[2 * CHUNK..]);
        let (mut tx, compressor) = channel();
        let worker = std::thread::spawn(move || compressor.run(Vec::new()));
        for w in &writes {
            assert_eq!(tx.write(w).unwrap(), w.len());
        }
        tx.finish().unwrap();
        let (bytes, digest, size) = worker.join().unwrap().unwrap();
        let expected = one_thread(&writes);
        assert_eq!(bytes, expected);
        assert_eq!((digest, size), (Digest::of(&expected), expected.len() as u64));
    }

    /// Why the writes are replayed one for one rather than merged: the same
    /// stream in other cuts compresses to other bytes.
    #[test]
    fn the_cuts_matter_to_deflate() {
        let text: Vec<u8> = (0..400_000u32).flat_map(|i| format!("  key{}: value-{}\n", i % 5000, i * 7919 % 10007).into_bytes()).collect();
        let in_8k: Vec<&[u8]> = text.chunks(8192).collect();
        assert_ne!(one_thread(&in_8k), one_thread(&[&text]));
    }

    #[test]
    fn a_stopped_compressor_is_a_broken_pipe() {
        let (mut tx, compressor) = channel();
        drop(compressor);
        tx.write_all(&vec![0; CHUNK]).unwrap();
        let err = tx.write_all(b"more").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
