//! The trust chain against an in-memory registry.

use std::collections::BTreeSet;

use super::*;
use crate::core::archive;
use crate::core::capsule::{self, Built};
use crate::core::ident::Repository;
use crate::core::manifest::{self, Manifest, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE};
use crate::core::package::{Package, PackageKind};
use crate::core::release::{Release, SBOM_PATH};
use crate::failure::FailureKind;
use crate::registry::memory::MemoryRegistry;
use crate::tree::LocalFiles;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_SHA: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";

/// A registry holding an app image at `git-<SHA>`, and a scratch dir.
struct World {
    reg: MemoryRegistry,
    tmp: tempfile::TempDir,
    image: Repository,
    capsule: Repository,
    image_digest: Digest,
}

impl World {
    fn new() -> Self {
        Self::with(MemoryRegistry::new())
    }
    fn with(reg: MemoryRegistry) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let chart = tmp.path().join("chart");
        fs::create_dir_all(chart.join("templates")).unwrap();
        fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: \"1.0\"\n").unwrap();
        fs::write(chart.join("values.yaml"), "replicaCount: 1\n").unwrap();
        fs::write(chart.join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        let image: Repository = "127.0.0.1:5000/acme/shop".parse().unwrap();
        let capsule = Repository::default_capsule_for(&image);
        let image_manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let image_digest = reg.put_manifest(&image, Some(&format!("git-{SHA}")), image_manifest, MANIFEST_MEDIA_TYPE);
        Self { reg, tmp, image, capsule, image_digest }
    }

    fn package(&self) -> Package {
        crate::tree::package::scan(&self.tmp.path().join("chart"), PackageKind::Helm).unwrap()
    }

    /// The release this world's image belongs to, as `edit` changes it.
    fn release(&self, package: &Package, edit: impl FnOnce(&mut Release)) -> Release {
        let mut r = Release {
            git_commit: SHA.parse().unwrap(),
            created: "2026-11-20T10:11:12Z".parse().unwrap(),
            source: "https://github.com/acme/shop".parse().unwrap(),
            image: self.image.clone(),
            image_digest: self.image_digest.clone(),
            capsule: self.capsule.clone(),
            package_kind: PackageKind::Helm,
            package_digest: package.digest.clone(),
            chart: package.chart.clone(),
        };
        edit(&mut r);
        r
    }

    /// Builds a capsule the way `build` does and stores it as `capsule:<tag>`.
    fn publish(&self, tag: &str, edit: impl FnOnce(&mut Release)) -> Digest {
        self.publish_built(tag, edit, false).0
    }

    /// Like [`Self::publish`], with layer 1 (the chart) when `chart_layer`;
    /// also the built capsule and the chart layer's bytes.
    fn publish_built(&self, tag: &str, edit: impl FnOnce(&mut Release), chart_layer: bool) -> (Digest, Built, Option<Vec<u8>>) {
        let package = self.package();
        let r = self.release(&package, edit);
        let docs = capsule::documents(&r, &package, "chart", None, None).unwrap();
        let (built, layer, chart) = capsule::write(&r, &package, &docs, Vec::new(), chart_layer.then(Vec::new), &LocalFiles).unwrap();
        if let Some(chart) = &chart {
            self.reg.put_blob(&self.capsule, chart);
        }
        (self.store(tag, &built.manifest_bytes, &layer), built, chart)
    }

    fn store(&self, tag: &str, manifest: &[u8], layer: &[u8]) -> Digest {
        self.reg.put_blob(&self.capsule, EMPTY_CONFIG);
        self.reg.put_blob(&self.capsule, layer);
        self.reg.put_manifest(&self.capsule, Some(tag), manifest, MANIFEST_MEDIA_TYPE)
    }

    fn capsule_ref(&self, tag: &str) -> Reference {
        Reference { repo: self.capsule.clone(), tag: Some(tag.parse().unwrap()), digest: None }
    }
    fn by_digest(&self, digest: Digest) -> Reference {
        Reference { repo: self.capsule.clone(), tag: None, digest: Some(digest) }
    }
    fn image_ref(&self) -> Reference {
        Reference { repo: self.image.clone(), tag: Some(format!("git-{SHA}").parse().unwrap()), digest: None }
    }

    async fn verify(&self, capsule: &Reference, image_digest: Option<&Digest>, output: Option<&Path>) -> Result<Verdict, Failure> {
        let image = self.image_ref();
        verify_into(&self.reg, Question { capsule, image: &image, image_digest, public_key: None }, output).await
    }

    fn listing(&self) -> BTreeSet<String> {
        fs::read_dir(self.tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }
}

fn failed_names(v: &Verdict) -> Vec<&str> {
    v.checks.failed().map(|c| c.name.as_str()).collect()
}

fn tag() -> String {
    format!("git-{SHA}")
}

#[tokio::test]
async fn a_real_release_verifies_by_tag_and_by_digest_and_lands_in_output() {
    let w = World::new();
    let digest = w.publish(&tag(), |_| {});
    let out = w.tmp.path().join("out");
    let before = w.listing();
    let v = w.verify(&w.capsule_ref(&tag()), Some(&w.image_digest), Some(&out)).await.unwrap();
    assert!(v.verified(), "{}", v.checks.failure_lines());
    assert_eq!(v.digest.as_ref(), Some(&digest));
    assert_eq!(v.release.as_ref().unwrap().git_commit.as_deref(), Some(SHA));
    assert_eq!(v.resolved_image_digest.as_ref(), Some(&w.image_digest));
    assert!(out.join("release.yaml").is_file() && out.join("package/helm/Chart.yaml").is_file());
    // Only the output appeared beside it: no staging or scratch left behind.
    let mut expected = before;
    expected.insert("out".into());
    assert_eq!(w.listing(), expected);

    let v = w.verify(&w.by_digest(digest), None, None).await.unwrap();
    assert!(v.verified(), "{}", v.checks.failure_lines());
}

#[tokio::test]
async fn the_chart_layer_is_checked_against_package_helm() {
    let w = World::new();
    let (digest, built, chart) = w.publish_built(&tag(), |_| {}, true);
    assert_eq!(built.manifest.layers.len(), 2);
    let v = w.verify(&w.by_digest(digest), None, None).await.unwrap();
    assert!(v.verified(), "{}", v.checks.failure_lines());
    for name in ["chart layer.digest", "chart layer files", "chart layer directory", "chart layer title"] {
        assert!(v.checks.get(name).is_some_and(|c| c.ok), "{name} not checked");
    }
    // A chart layer whose digest matches its descriptor, but whose files are not package/helm/.
    let chart_bytes = chart.unwrap();
    let package = w.package();
    let mut other = package.clone();
    if let Some(crate::core::package::PackageEntry::File(f)) =
        other.entries.iter_mut().find(|e| matches!(e, crate::core::package::PackageEntry::File(f) if f.path == "values.yaml"))
    {
        let evil = w.tmp.path().join("evil-values.yaml");
        fs::write(&evil, "replicaCount: 99\n").unwrap();
        f.source = evil;
        f.sha256 = Digest::of(b"replicaCount: 99\n");
        f.size = "replicaCount: 99\n".len() as u64;
    }
    let info = package.chart.clone().unwrap();
    let (evil_layer, evil_bytes) = archive::write_layer(capsule::chart_entries(&other, &info), Vec::new(), &LocalFiles).unwrap();
    assert_ne!(evil_bytes, chart_bytes);
    let mut m = built.manifest.clone();
    m.layers[1] = manifest::chart_layer_descriptor(&evil_layer.digest, evil_layer.size, &info.name, &info.version);
    w.reg.put_blob(&w.capsule, &evil_bytes);
    let digest = w.reg.put_manifest(&w.capsule, Some("evil-chart"), &m.to_bytes(), MANIFEST_MEDIA_TYPE);
    let v = w.verify(&w.by_digest(digest), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["chart layer files"]);
    assert_eq!(v.checks.get("chart layer files").unwrap().actual, "values.yaml differs");
}

#[tokio::test]
async fn each_broken_promise_fails_with_its_field_named() {
    let w = World::new();
    let other = Digest::of(b"another image");
    // The capsule was built for an image digest the registry does not have.
    w.publish("stale", |r| r.image_digest = other.clone());
    let v = w.verify(&w.capsule_ref("stale"), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["capsule tag (--capsule)", "image.digest (registry)"]);

    // A good capsule, but Freight expects another image digest.
    w.publish(&tag(), |_| {});
    let v = w.verify(&w.capsule_ref(&tag()), Some(&other), None).await.unwrap();
    assert_eq!(failed_names(&v), ["image.digest (--image-digest)"]);
    let c = v.checks.get("image.digest (--image-digest)").unwrap();
    assert_eq!((c.expected.as_str(), c.actual.as_str()), (other.as_str(), w.image_digest.as_str()));

    // Another commit's capsule pushed under this release's tag.
    let wrong = w.publish("wrong-commit", |r| r.git_commit = OTHER_SHA.parse().unwrap());
    let v = w.verify(&w.by_digest(wrong), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["gitCommit", "image.tag", "capsule.tag"]);

    // release.yaml's package digest is not what the package files hash to.
    let tampered = w.publish("tampered", |r| r.package_digest = Digest::of(b"some other chart"));
    let v = w.verify(&w.by_digest(tampered), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["package.digest"]);
}

fn manifest_with(w: &World, edit: impl FnOnce(&mut Manifest), entries_filter: impl Fn(&str) -> bool) -> (Vec<u8>, Vec<u8>) {
    let package = w.package();
    let r = w.release(&package, |_| {});
    let docs = capsule::documents(&r, &package, "chart", None, None).unwrap();
    let entries = capsule::entries(&r, &package, &docs).into_iter().filter(|e| entries_filter(&e.path));
    let (layer, bytes) = archive::write_layer(entries, Vec::new(), &LocalFiles).unwrap();
    let mut m = manifest::capsule_manifest(&r, &layer.digest, layer.size);
    edit(&mut m);
    (m.to_bytes(), bytes)
}

#[tokio::test]
async fn wrong_artifact_type_and_missing_metadata_fail() {
    let w = World::new();
    let (m, layer) = manifest_with(&w, |m| m.artifact_type = Some("application/vnd.cncf.helm.config.v1+json".into()), |_| true);
    w.store(&tag(), &m, &layer);
    let v = w.verify(&w.capsule_ref(&tag()), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["artifactType"]);

    let (m, layer) = manifest_with(&w, |_| {}, |p| p != SBOM_PATH);
    w.store(&tag(), &m, &layer);
    let v = w.verify(&w.capsule_ref(&tag()), None, None).await.unwrap();
    assert_eq!(failed_names(&v), [SBOM_PATH]);
}

#[tokio::test]
async fn what_the_registry_serves_is_hashed_here_too() {
    // A client that skips its own checks still cannot slip a wrong layer or manifest past.
    let w = World::with(MemoryRegistry::careless());
    let good = w.publish(&tag(), |_| {});
    let fetched = w.reg.manifest(&w.capsule, (&good).into()).await.unwrap().unwrap();
    let m: Manifest = serde_json::from_slice(&fetched.bytes).unwrap();
    let layer_digest: Digest = m.layers[0].digest.parse().unwrap();
    let mut evil = fs::read(w.tmp.path().join("chart/values.yaml")).unwrap();
    evil.resize(m.layers[0].size as usize, b'x');
    w.reg.put_blob_as(&w.capsule, &layer_digest, &evil);
    let v = w.verify(&w.capsule_ref(&tag()), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["layer.digest"]);

    let liar = Digest::of(b"the manifest you wanted");
    w.reg.put_manifest_as(&w.capsule, None, &liar, &fetched.bytes, MANIFEST_MEDIA_TYPE);
    let v = w.verify(&w.by_digest(liar), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["manifest.digest"]);

    // A careful client refuses the blob itself; that is reported the same way.
    let w = World::new();
    w.publish(&tag(), |_| {});
    w.reg.put_blob_as(&w.capsule, &layer_digest, &evil);
    let out = w.tmp.path().join("out");
    let v = w.verify(&w.capsule_ref(&tag()), None, Some(&out)).await.unwrap();
    assert_eq!(failed_names(&v), ["layer.digest"]);
    assert!(!out.exists(), "an unverified tree reached the output");
}

#[tokio::test]
async fn failures_leave_nothing_behind_and_map_to_exit_codes() {
    let w = World::new();
    w.publish("stale", |r| r.image_digest = Digest::of(b"old"));
    let out = w.tmp.path().join("out");
    let before = w.listing();
    let v = w.verify(&w.capsule_ref("stale"), None, Some(&out)).await.unwrap();
    assert!(!v.verified());
    assert!(!out.exists());
    assert_eq!(w.listing(), before);

    let v = w.verify(&w.capsule_ref("absent"), None, None).await.unwrap();
    assert_eq!(failed_names(&v), ["capsule"]);

    fs::create_dir_all(out.join("keep")).unwrap();
    let e = w.verify(&w.capsule_ref("stale"), None, Some(&out)).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Input, "{e}");
    assert!(out.join("keep").is_dir());

    let down = World::with(MemoryRegistry::unreachable());
    let e = down.verify(&down.capsule_ref(&tag()), None, None).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Network, "{e}");
    let e = pull_into(&down.reg, &down.capsule_ref(&tag()), &down.tmp.path().join("out")).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Network, "{e}");
}

#[tokio::test]
async fn pull_unpacks_good_capsules_and_refuses_unsafe_archives() {
    let w = World::new();
    let digest = w.publish(&tag(), |_| {});
    let out = w.tmp.path().join("pulled");
    let p = pull_into(&w.reg, &w.capsule_ref(&tag()), &out).await.unwrap();
    assert_eq!(p.digest, digest);
    assert!(out.join("metadata/provenance.json").is_file());

    // A layer with a symlink, under a manifest that describes it truthfully.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "release.yaml", "/etc/passwd").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    let layer = gz.finish().unwrap();
    let r = w.release(&w.package(), |_| {});
    let m = manifest::capsule_manifest(&r, &Digest::of(&layer), layer.len() as u64);
    w.store("evil", &m.to_bytes(), &layer);
    let out = w.tmp.path().join("evil-out");
    let before = w.listing();
    let e = pull_into(&w.reg, &w.capsule_ref("evil"), &out).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Failed);
    assert!(
        format!("{e}")
            .contains("layer archive: expected an archive spec section 2 allows, got archive entry \"release.yaml\": is a symlink"),
        "{e}"
    );
    assert!(!out.exists());
    assert_eq!(w.listing(), before);
}

#[tokio::test]
async fn blocking_work_holds_the_lease_until_it_has_ended() {
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let permit = Arc::new(Arc::clone(&permits).acquire_owned().await.unwrap());
    let (finish, finished) = std::sync::mpsc::channel::<()>();
    let work = holding(permit, blocking(move || finished.recv().ok()));
    // The caller gives up (its request timed out): its future is dropped.
    assert!(tokio::time::timeout(std::time::Duration::from_millis(20), work).await.is_err());
    assert_eq!(permits.available_permits(), 0, "the blocking work still runs, so the permit is still taken");
    finish.send(()).unwrap();
    let back = tokio::time::timeout(std::time::Duration::from_secs(30), permits.acquire()).await;
    assert!(back.is_ok(), "given back once the work ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpack_whose_request_gave_up_stops_and_then_gives_its_permit_back() {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer.tar.gz");
    let files = 9_000;
    fs::write(&layer, crate::tree::unpack::tests::many_files(files)).unwrap();
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let permit = Arc::new(Arc::clone(&permits).acquire_owned().await.unwrap());
    let tree = dir.path().join("tree");
    let mut checks = Checks::default();
    let unpack = fetch::unpack_checked(&layer, &tree, "layer archive", &mut checks);
    // The request times out while the unpack runs on a blocking thread: its future is dropped.
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(1), holding(permit, unpack)).await;
    assert!(gave_up.is_err(), "9,000 files are not written in a millisecond");
    let back = tokio::time::timeout(std::time::Duration::from_secs(60), permits.acquire()).await;
    assert!(back.is_ok(), "the permit came back once the unpack ended");
    let written = fs::read_dir(tree.join("d")).map_or(0, |d| d.count());
    assert!(written < files, "the unpack ran on after its request gave up: {written} of {files} files written");
}

#[test]
fn layer_0_adds_exactly_its_own_entries_to_the_package() {
    // What the package walk's limit assumes (package::MAX_PACKAGE_ENTRIES).
    let w = World::new();
    let package = w.package();
    let r = w.release(&package, |_| {});
    let docs = capsule::documents(&r, &package, "chart", None, None).unwrap();
    assert_eq!(capsule::entries(&r, &package, &docs).len(), package.entries.len() + crate::core::package::CAPSULE_OWN_ENTRIES);
}
