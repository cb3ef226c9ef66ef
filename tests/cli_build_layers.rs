//! `release-capsule build` writes both layers from one read of the package,
//! on a compressor thread each (issue 16). Through the real binary, on real
//! files: the layers are byte for byte what one tar writer and one gzip
//! encoder on one thread make of the same entries (the golden tests pin only
//! small files, never a file across read pieces or compressor chunks), and a
//! disk that refuses the bytes is named and leaves nothing behind.

#![allow(clippy::unwrap_used)] // a test crate: a panic is the failure report

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn build(chart: &Path, out: &Path, wrap: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_release-capsule");
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    argv.push(bin.into());
    argv.extend(
        [
            "build",
            "--sha",
            SHA,
            "--image",
            "ghcr.io/acme/layers",
            "--image-digest",
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "--source-repository",
            "https://github.com/acme/layers",
            "--created",
            "2026-11-20T10:11:12Z",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    argv.extend(["--package-path".into(), chart.display().to_string(), "--output".into(), out.display().to_string()]);
    Command::new(&argv[0]).args(&argv[1..]).env_remove("SOURCE_DATE_EPOCH").output().unwrap()
}

/// A chart whose files cross every boundary the layer writer cuts at: empty,
/// under a tar block, across 8 KiB read pieces and 256 KiB compressor chunks,
/// text (long matches) and incompressible bytes, a few MiB in all.
fn chart(root: &Path) {
    fs::create_dir_all(root.join("templates/deep/er/still")).unwrap();
    fs::write(root.join("Chart.yaml"), "apiVersion: v2\nname: layers\nversion: 0.1.0\n").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let sizes = [0usize, 1, 511, 512, 8191, 8193, 256 * 1024 + 3, 3 * 256 * 1024 + 8191, 4 * 1024 * 1024 + 17];
    for (i, &n) in sizes.iter().enumerate() {
        let bytes = if i % 2 == 1 { b"  key: value-123\n".iter().cycle().take(n).copied().collect() } else { random(n) };
        let dir = if i % 3 == 0 { "templates" } else { "templates/deep/er/still" };
        fs::write(root.join(dir).join(format!("f{i}.yaml")), bytes).unwrap();
    }
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

/// The layer again, by the tar crate's own `append_data` into one gzip
/// encoder on this thread (the writer before issue 16): every header as spec
/// section 2 normalizes it, each file's data read from its file on disk.
fn one_thread(layer: &[u8], package_root: &str, chart: &Path) -> Vec<u8> {
    let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::new(6));
    let mut out = tar::Builder::new(gz);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let (kind, mode, size) = (entry.header().entry_type(), entry.header().mode().unwrap(), entry.size());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        let data: Box<dyn Read> = match path.strip_prefix(package_root) {
            Some(rel) if kind == tar::EntryType::Regular => Box::new(fs::File::open(chart.join(rel)).unwrap().take(size)),
            _ => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                Box::new(io::Cursor::new(bytes))
            }
        };
        out.append_data(&mut h, &path, data).unwrap();
    }
    out.into_inner().unwrap().finish().unwrap()
}

#[test]
fn both_layers_are_what_one_writer_on_one_thread_makes_of_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let chart_dir = tmp.path().join("chart");
    chart(&chart_dir);
    let out = tmp.path().join("oci");
    let built = build(&chart_dir, &out, &[]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let report: serde_json::Value = serde_json::from_slice(&built.stdout).unwrap();
    let (layer0, layer1) = (blob(&out, report["layerDigest"].as_str().unwrap()), blob(&out, report["chartLayerDigest"].as_str().unwrap()));
    assert!(layer0.len() > 4 << 20, "the package's random bytes do not compress");
    assert!(layer0 == one_thread(&layer0, "package/helm/", &chart_dir), "layer 0 differs from the one-thread writer's");
    assert!(layer1 == one_thread(&layer1, "layers/", &chart_dir), "layer 1 differs from the one-thread writer's");
}

/// The staging directories a build leaves beside its output (`.oci.partial-<pid>`).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains(".partial")).collect()
}

#[test]
fn a_disk_that_refuses_a_layer_is_named_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let chart_dir = tmp.path().join("chart");
    chart(&chart_dir);
    let out = tmp.path().join("oci");
    // A file size limit of about 1 MiB, with SIGXFSZ ignored: a write past it
    // fails (EFBIG) as a full disk's does (ENOSPC), on a compressor thread.
    let limited = build(&chart_dir, &out, &["sh", "-c", r#"trap "" XFSZ; ulimit -f 2048; exec "$0" "$@""#]);
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    let named =
        ["layer", "chart"].iter().any(|l| stderr.contains(&format!("blobs/sha256/.{l}.partial: cannot be written: File too large")));
    assert!(named, "the error names the file the disk refused: {stderr}");
    assert!(!out.exists() && leftovers(tmp.path()).is_empty(), "nothing half-written: {:?}", leftovers(tmp.path()));
}
