//! `release-capsule build` end to end, through the real binary: determinism,
//! the golden digest, and one specific error per bad input.

#![allow(clippy::unwrap_used)] // a test crate: a panic is the failure report

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const IMAGE_DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// The capsule digest of tests/fixtures/golden-chart built with [`golden_args`].
///
/// Derived by running this very build (`cargo test golden -- --nocapture`
/// prints the digests it got) and checked below against an independent
/// recomputation: the manifest hashes to it, and the layer it names hashes to
/// its descriptor. A change here is a format change: every capsule digest
/// moves with it, so it needs a note in the changelog, not just a new value.
/// The provenance names the tool version, so a version bump moves it too.
const GOLDEN_DIGEST: &str = "sha256:cf36c7a443c2afb61121bcf575f908fc1a8e0b85c9df03bf8a392be95a0dabc1";
const GOLDEN_LAYER_DIGEST: &str = "sha256:b2edd1fb4328780b46739a71116d87ceea7b0350e7c8e37e2f7827598a758693";
/// Layer 1, the chart as `helm package` lays it out (spec section 5), and the
/// capsule digest of a build that has it (the default for a Helm chart).
/// [`GOLDEN_DIGEST`] is the same build with `--no-helm-layer`: layer 0 and
/// everything in it are the same bytes either way.
const GOLDEN_CHART_LAYER_DIGEST: &str = "sha256:c495bc6bb457bccf02d042984190939f48605addaefb4904e2250f749c8c96cb";
const GOLDEN_DIGEST_WITH_CHART: &str = "sha256:639b090370378f56f20257972946673bcffbd941a9b1d8033b93d7c3d2807ae5";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_release-capsule"));
    c.env_remove("SOURCE_DATE_EPOCH").env_remove("GITHUB_REPOSITORY").env_remove("GITHUB_SERVER_URL");
    c
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-chart")
}

fn golden_args(chart: &Path, out: &Path) -> Vec<String> {
    [
        "build",
        "--sha",
        SHA,
        "--image",
        "ghcr.io/acme/golden",
        "--image-digest",
        IMAGE_DIGEST,
        "--source-repository",
        "https://github.com/acme/golden",
        "--created",
        "2026-11-20T10:11:12Z",
        "--json",
        "--no-helm-layer",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--package-path".into(), chart.display().to_string(), "--output".into(), out.display().to_string()])
    .collect()
}

fn run(args: &[String]) -> Output {
    bin().args(args).output().expect("run release-capsule")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "build failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON object")
}

fn copy_tree(from: &Path, to: &Path, reverse: bool) {
    fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = fs::read_dir(from).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    if reverse {
        names.reverse();
    }
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst, reverse);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

fn scramble_metadata(dir: &Path, mtime: SystemTime, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scramble_metadata(&path, mtime, mode);
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        }
    }
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

fn hex_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[test]
fn same_inputs_give_the_same_bytes_across_checkouts() {
    let tmp = tempfile::tempdir().unwrap();
    // Two clones of one repository in differently named places; the chart
    // sits at the same path inside each.
    let a = tmp.path().join("checkout-one/charts/golden");
    let b = tmp.path().join("somewhere/else/charts/golden");
    fs::create_dir_all(tmp.path().join("checkout-one/.git")).unwrap();
    fs::create_dir_all(tmp.path().join("somewhere/else/.git")).unwrap();
    copy_tree(&fixture(), &a, false);
    copy_tree(&fixture(), &b, true);
    scramble_metadata(&a, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000), 0o600);
    scramble_metadata(&b, SystemTime::now(), 0o664);
    let (out_a, out_b) = (tmp.path().join("oci-a"), tmp.path().join("oci-b"));
    let ja = json(&run(&golden_args(&a, &out_a)));
    // The second build runs from inside its clone with a relative path.
    let mut args_b = golden_args(Path::new("charts/golden"), &out_b);
    args_b.iter_mut().filter(|x| x.as_str() == "charts/golden").for_each(|x| *x = "./charts/golden".into());
    let out = bin().args(&args_b).current_dir(tmp.path().join("somewhere/else")).output().unwrap();
    let jb = json(&out);
    assert_eq!(ja, jb);
    let layer = ja["layerDigest"].as_str().unwrap();
    assert_eq!(blob(&out_a, layer), blob(&out_b, layer));
    assert_eq!(fs::read(out_a.join("index.json")).unwrap(), fs::read(out_b.join("index.json")).unwrap());
}

#[test]
fn created_from_source_date_epoch_equals_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = golden_args(&fixture(), &tmp.path().join("a"));
    let with_flag = json(&run(&args));
    let pos = args.iter().position(|a| a == "--created").unwrap();
    args.drain(pos..pos + 2);
    args.iter_mut().filter(|a| a.ends_with("/a")).for_each(|a| *a = tmp.path().join("b").display().to_string());
    let out = bin().args(&args).env("SOURCE_DATE_EPOCH", "1795169472").output().unwrap();
    assert_eq!(json(&out), with_flag);
}

/// Every entry name of a gzip'd tar, in order.
fn entry_names(layer: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
    }
    names
}

#[test]
fn golden_chart_layer_is_pinned_and_rederived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    let mut args = golden_args(&fixture(), &out);
    args.retain(|a| a != "--no-helm-layer");
    let report = json(&run(&args));
    let digest = report["digest"].as_str().unwrap();
    let chart_digest = report["chartLayerDigest"].as_str().unwrap();
    println!("capsule digest with chart layer {digest}\nchart layer digest {chart_digest}");
    let manifest = blob(&out, digest);
    assert_eq!(hex_digest(&manifest), digest);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["layers"][0]["digest"], GOLDEN_LAYER_DIGEST, "layer 0 does not change with layer 1");
    let l1 = &m["layers"][1];
    assert_eq!(l1["mediaType"], "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
    assert_eq!(l1["annotations"]["org.opencontainers.image.title"], "golden-1.2.3.tgz");
    assert_eq!(l1["digest"], chart_digest);
    let chart = blob(&out, chart_digest);
    assert_eq!(hex_digest(&chart), chart_digest);
    assert_eq!(l1["size"], chart.len());
    let long =
        "golden/templates/nested/a-file-name-long-enough-to-need-the-gnu-long-name-extension-because-it-is-over-one-hundred-bytes.txt";
    assert_eq!(
        entry_names(&chart),
        [
            "golden/",
            "golden/.helmignore",
            "golden/Chart.yaml",
            "golden/templates/",
            "golden/templates/configmap.yaml",
            "golden/templates/nested/",
            long,
            "golden/values.yaml",
        ]
    );
    assert_eq!(chart_digest, GOLDEN_CHART_LAYER_DIGEST, "the chart layer format changed (see GOLDEN_CHART_LAYER_DIGEST)");
    assert_eq!(digest, GOLDEN_DIGEST_WITH_CHART, "the capsule format changed (see GOLDEN_CHART_LAYER_DIGEST)");
}

#[test]
fn golden_digest_is_pinned_and_rederived() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("oci");
    let report = json(&run(&golden_args(&fixture(), &out)));
    assert!(report.get("chartLayerDigest").is_none(), "--no-helm-layer leaves layer 1 out");
    let digest = report["digest"].as_str().unwrap();
    let layer_digest = report["layerDigest"].as_str().unwrap();
    println!("capsule digest {digest}\nlayer digest   {layer_digest}");

    // Re-derive both digests from the bytes on disk.
    let manifest = blob(&out, digest);
    assert_eq!(hex_digest(&manifest), digest);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["layers"][0]["digest"], layer_digest);
    let layer = blob(&out, layer_digest);
    assert_eq!(hex_digest(&layer), layer_digest);
    assert_eq!(m["layers"][0]["size"], layer.len());

    // The archive holds exactly the spec's tree, in spec order.
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
    }
    let long = "package/helm/templates/nested/a-file-name-long-enough-to-need-the-gnu-long-name-extension-because-it-is-over-one-hundred-bytes.txt";
    assert_eq!(
        names,
        [
            "metadata/",
            "metadata/provenance.json",
            "metadata/sbom.json",
            "package/",
            "package/helm/",
            "package/helm/.helmignore",
            "package/helm/Chart.yaml",
            "package/helm/templates/",
            "package/helm/templates/configmap.yaml",
            "package/helm/templates/nested/",
            long,
            "package/helm/values.yaml",
            "release.yaml",
        ]
    );

    assert_eq!(digest, GOLDEN_DIGEST, "the capsule format changed (see GOLDEN_DIGEST)");
    assert_eq!(layer_digest, GOLDEN_LAYER_DIGEST, "the archive format changed (see GOLDEN_DIGEST)");
}

/// Runs a build expected to fail with exit 2 and checks that the message
/// names the problem and that no output directory was left behind.
fn expect_input_error(chart: &Path, extra: &[&str], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("oci");
    let mut args = golden_args(chart, &out_dir);
    args.retain(|a| a != "--json");
    for pair in extra.chunks(2) {
        if let Some(pos) = args.iter().position(|a| a == pair[0]) {
            args[pos + 1] = pair[1].to_owned();
        } else {
            args.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "{needle}: left {leftovers:?}");
}

fn chart_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("chart");
    copy_tree(&fixture(), &dir, false);
    dir
}

#[test]
fn bad_inputs_each_get_their_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    expect_input_error(&tmp.path().join("missing"), &[], "does not exist");

    let chart = chart_copy(&tmp.path().join("no-chart-yaml"));
    fs::remove_file(chart.join("Chart.yaml")).unwrap();
    expect_input_error(&chart, &[], "Chart.yaml: missing");

    let chart = chart_copy(&tmp.path().join("bad-version"));
    fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: golden\nversion: latest\n").unwrap();
    expect_input_error(&chart, &[], "Chart.yaml:3: Chart.yaml version \"latest\" is not SemVer 2");

    let chart = chart_copy(&tmp.path().join("bad-yaml"));
    fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: [golden\n").unwrap();
    expect_input_error(&chart, &[], "Chart.yaml is not valid YAML");

    let chart = fixture();
    expect_input_error(&chart, &["--sha", "0123456"], "--sha: invalid commit sha \"0123456\"");
    expect_input_error(&chart, &["--sha", &SHA.to_uppercase()], "expected 40 lowercase hex digits");
    expect_input_error(&chart, &["--sha", "z123456789abcdef0123456789abcdef01234567"], "invalid commit sha");
    expect_input_error(&chart, &["--image", "ghcr.io/Acme/Golden"], "must be lowercase");
    expect_input_error(&chart, &["--package-kind", "jsonnet"], "unknown package kind \"jsonnet\"");

    let chart = chart_copy(&tmp.path().join("escape"));
    std::os::unix::fs::symlink("/etc/passwd", chart.join("templates/passwd.yaml")).unwrap();
    expect_input_error(&chart, &[], "templates/passwd.yaml: symlink to /etc/passwd leaves the package root");

    let chart = chart_copy(&tmp.path().join("dangling"));
    std::os::unix::fs::symlink("nowhere.yaml", chart.join("templates/gone.yaml")).unwrap();
    expect_input_error(&chart, &[], "templates/gone.yaml: symlink target nowhere.yaml does not exist");

    let chart = chart_copy(&tmp.path().join("big"));
    let big = fs::File::create(chart.join("big.bin")).unwrap();
    big.set_len(51 * 1024 * 1024).unwrap();
    expect_input_error(&chart, &[], "big.bin: 53477376 bytes is over Kargo's 50 MiB limit");

    let chart = chart_copy(&tmp.path().join("non-utf8"));
    use std::os::unix::ffi::OsStrExt;
    fs::write(chart.join(std::ffi::OsStr::from_bytes(b"templates/caf\xe9.yaml")), "x").unwrap();
    expect_input_error(&chart, &[], "is not valid UTF-8");

    let chart = chart_copy(&tmp.path().join("dots"));
    fs::write(chart.join("templates/config..yaml"), "x: 1\n").unwrap();
    expect_input_error(&chart, &[], "templates/config..yaml: the name holds two dots in a row, which Kargo's untar");

    let chart = chart_copy(&tmp.path().join("undeclared-dep"));
    fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: golden\nversion: 1.0.0\ndependencies:\n  - name: redis\n    version: 1.x\n")
        .unwrap();
    expect_input_error(&chart, &[], "dependency \"redis\" is not vendored under charts/");

    let kustomize = tmp.path().join("kustomize");
    fs::create_dir_all(&kustomize).unwrap();
    fs::write(kustomize.join("deployment.yaml"), "kind: Deployment\n").unwrap();
    expect_input_error(&kustomize, &["--package-kind", "kustomize"], "no kustomization file at the package root");
}

#[test]
fn symlinks_inside_the_root_are_stored_as_files() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = chart_copy(tmp.path());
    std::os::unix::fs::symlink("configmap.yaml", chart.join("templates/alias.yaml")).unwrap();
    let out = tmp.path().join("oci");
    let report = json(&run(&golden_args(&chart, &out)));
    let layer = blob(&out, report["layerDigest"].as_str().unwrap());
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
    let alias = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"package/helm/templates/alias.yaml")
        .expect("alias is in the archive");
    assert!(alias.header().entry_type().is_file());
}

#[test]
fn rebuilding_replaces_our_own_outputs_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, unpacked) = (tmp.path().join("oci"), tmp.path().join("tree"));
    let mut args = golden_args(&fixture(), &out);
    args.extend(["--unpacked".to_owned(), unpacked.display().to_string()]);
    let first = json(&run(&args));
    // A second build over the first one's layout and tree: both are ours.
    assert_eq!(json(&run(&args)), first);
    assert!(unpacked.join("release.yaml").is_file());

    // A directory holding anything else is never replaced.
    for (flag, what) in [("--unpacked", "an unpacked capsule"), ("--output", "an OCI image layout")] {
        let precious = tmp.path().join(format!("precious{flag}"));
        fs::create_dir_all(&precious).unwrap();
        fs::write(precious.join("notes.txt"), "mine").unwrap();
        let mut args = golden_args(&fixture(), &tmp.path().join("oci-2"));
        args.retain(|a| a != "--json");
        match args.iter().position(|a| a == flag) {
            Some(pos) => args[pos + 1] = precious.display().to_string(),
            None => args.extend([flag.to_owned(), precious.display().to_string()]),
        }
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("exists and holds something other than {what}")), "{stderr}");
        assert_eq!(fs::read_to_string(precious.join("notes.txt")).unwrap(), "mine");
    }
}
