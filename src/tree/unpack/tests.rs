//! Unpacking hostile archives: what section 2 forbids, tar extensions, lying
//! headers, trailing data.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::*;
use crate::core::ident::Digest;
use crate::core::package::MAX_ENTRIES;

fn tar_bytes(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(raw).unwrap();
    gz.finish().unwrap()
}

fn tgz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    gzip(&tar_bytes(build))
}

/// One pax record: `<len> <key>=<value>\n`, where len counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn refused(layer: &[u8]) -> UnpackError {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("out");
    let err = unpack(layer, &out).unwrap_err();
    // Nothing was written beside the output directory.
    let beside: Vec<_> = fs::read_dir(dir.path().join("nested")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, ["out"], "{err}");
    err
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &[u8], data: &[u8], kind: tar::EntryType) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn refuses_what_section_2_forbids() {
    let cases: Vec<(&[u8], tar::EntryType)> = vec![
        (b"../evil", tar::EntryType::Regular),
        (b"/etc/evil", tar::EntryType::Regular),
        (b"./release.yaml", tar::EntryType::Regular),
        (b"a\\b", tar::EntryType::Regular),
        (b"link", tar::EntryType::Symlink),
        (b"hard", tar::EntryType::Link),
        (b"dev", tar::EntryType::Char),
        (b"fifo", tar::EntryType::Fifo),
        (b"nodir/file", tar::EntryType::Regular),
    ];
    for (name, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let layer = tgz(|b| file(b, name, b"x", kind));
        let err = unpack(&layer[..], &out).unwrap_err();
        assert!(matches!(err, UnpackError::Unsafe { .. } | UnpackError::Forbidden { .. }), "{name:?}: {err}");
        assert!(!dir.path().join("evil").exists());
    }
}

#[test]
fn refuses_tar_extensions_other_readers_interpret_differently() {
    let pax = |b: &mut tar::Builder<Vec<u8>>, kind| {
        file(b, b"pax", &pax_record("path", "release.yaml"), kind);
        file(b, b"innocent", b"x", tar::EntryType::Regular);
    };
    let err = refused(&tgz(|b| pax(b, tar::EntryType::XHeader)));
    assert!(matches!(&err, UnpackError::Forbidden { kind, .. } if kind.contains("pax extended")), "{err}");
    let err = refused(&tgz(|b| pax(b, tar::EntryType::XGlobalHeader)));
    assert!(matches!(&err, UnpackError::Forbidden { kind, .. } if kind == "pax global header"), "{err}");
    let err = refused(&tgz(|b| file(b, b"sparse", &[0u8; 512], tar::EntryType::GNUSparse)));
    assert!(matches!(err, UnpackError::Forbidden { .. } | UnpackError::Corrupt(_)), "{err}");
    let err = refused(&tgz(|b| file(b, b"a\nb", b"x", tar::EntryType::Regular)));
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");
    // Go cuts a GNU long name at its first NUL: that reader would see "release.yaml".
    let err = refused(&tgz(|b| {
        file(b, b"././@LongLink", b"release.yaml\0.evil\0", tar::EntryType::GNULongName);
        file(b, b"placeholder", b"x", tar::EntryType::Regular);
    }));
    assert!(matches!(&err, UnpackError::Unsafe { reason, .. } if reason.contains("NUL")), "{err}");
}

#[test]
fn header_sizes_are_not_trusted() {
    // The header claims 4096 bytes; the archive ends after 512.
    let mut h = tar::Header::new_gnu();
    h.set_path("liar").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(4096);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[b'L'; 512]);
    let err = refused(&gzip(&raw));
    assert!(matches!(err, UnpackError::Truncated { declared: 4096, read: 512, .. }), "{err}");
}

#[test]
fn reads_what_go_reads_after_the_first_member_and_marker() {
    // Two gzip members: Go's reader (Kargo's untar) sees both, and so must we.
    let first = tar_bytes(|b| file(b, b"a", b"1", tar::EntryType::Regular));
    let first = &first[..first.len() - 1024]; // without the end-of-archive blocks
    let mut layer = gzip(first);
    layer.extend(tgz(|b| file(b, b"b", b"2", tar::EntryType::Regular)));
    let dir = tempfile::tempdir().unwrap();
    let files = unpack(&layer[..], &dir.path().join("o")).unwrap();
    assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a", "b"]);

    // One zero block, then more entries: Go fails, the tar crate would stop quietly.
    let mut raw = tar_bytes(|b| file(b, b"a", b"1", tar::EntryType::Regular));
    raw.truncate(raw.len() - 1024);
    raw.extend_from_slice(&[0u8; 512]);
    raw.extend(tar_bytes(|b| file(b, b"b", b"2", tar::EntryType::Regular)));
    assert!(matches!(refused(&gzip(&raw)), UnpackError::TrailingData));
}

#[test]
fn unpacks_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let layer = tgz(|b| {
        file(b, b"d/", b"", tar::EntryType::Directory);
        file(b, b"d/f", b"hi", tar::EntryType::Regular);
    });
    let files = unpack(&layer[..], &dir.path().join("o")).unwrap();
    assert_eq!(files, vec![UnpackedFile { path: "d/f".into(), size: 2, sha256: Digest::of(b"hi") }]);
    assert_eq!(fs::read(dir.path().join("o/d/f")).unwrap(), b"hi");
    assert!(matches!(unpack(&layer[..], &dir.path().join("o")), Err(UnpackError::OutputNotEmpty { .. })));
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("link")).unwrap();
    assert!(matches!(unpack(&layer[..], &dir.path().join("link")), Err(UnpackError::OutputIsLink { .. })));
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// `d/` and `files` empty files under it.
pub(crate) fn many_files(files: usize) -> Vec<u8> {
    tgz(|b| {
        file(b, b"d/", b"", tar::EntryType::Directory);
        for i in 0..files {
            file(b, format!("d/f{i:05}").as_bytes(), b"", tar::EntryType::Regular);
        }
    })
}

#[test]
fn entries_are_counted_and_the_one_past_the_limit_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let files = unpack(&many_files(MAX_ENTRIES - 1)[..], &dir.path().join("ok")).unwrap();
    assert_eq!(files.len(), MAX_ENTRIES - 1, "10,000 entries in all: allowed");

    let out = dir.path().join("over");
    let err = unpack(&many_files(MAX_ENTRIES)[..], &out).unwrap_err();
    assert!(matches!(err, UnpackError::TooManyEntries), "{err}");
    assert!(err.to_string().contains("more than 10000 entries"), "{err}");
    let written = fs::read_dir(out.join("d")).unwrap().count();
    assert_eq!(written, MAX_ENTRIES - 1, "the directory and 9,999 files; the 10,001st entry was refused before it was written");
    assert!(!out.join(format!("d/f{:05}", MAX_ENTRIES - 1)).exists());
}

/// Reads `inner`, and sets `stop` once `after` bytes have been read.
struct StopAfter<'a> {
    inner: &'a [u8],
    after: usize,
    read: usize,
    stop: &'a AtomicBool,
}

impl Read for StopAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(512);
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n;
        if self.read >= self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[test]
fn an_unpack_stops_at_the_next_read_once_asked() {
    let layer = many_files(2000);
    let stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let reader = StopAfter { inner: &layer, after: layer.len() / 4, read: 0, stop: &stop };
    let err = unpack_until(reader, &dir.path().join("o"), &stop).unwrap_err();
    assert!(matches!(err, UnpackError::Stopped), "{err}");
    let written = fs::read_dir(dir.path().join("o/d")).unwrap().count();
    assert!(written < 2000, "stopped part way: {written} files");
    let stopped = AtomicBool::new(true);
    assert!(matches!(unpack_until(&layer[..], &dir.path().join("p"), &stopped), Err(UnpackError::Stopped)));
}
