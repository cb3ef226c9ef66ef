//! The trust chain of spec section 8 as one flow over a [`RegistryClient`]:
//! the manifest fetched by digest, the layer hashed as it lands on disk, a safe
//! unpack, then release.yaml against the image. `pull` runs the first three
//! steps, `verify` all four. An unpacked tree reaches its output directory only
//! when every step passed; until then it sits in a staging directory that is
//! removed when the flow fails.

use std::fs;
use std::io::{self, BufReader};
use std::path::Path;

use anyhow::anyhow;

use crate::core::ident::Digest;
use crate::core::reference::Reference;
use crate::core::release::ReleaseDoc;
use crate::core::unpack::{self, UnpackError, UnpackedFile};
use crate::core::verify::{self, CapsuleManifest, Checks, Expectations};
use crate::failure::Failure;
use crate::layout::{Replaceable, Staged};
use crate::registry::{RegistryClient, RegistryError};

/// A capsule that passed steps 1 to 3.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub manifest: CapsuleManifest,
    pub files: Vec<UnpackedFile>,
}

/// How far steps 1 to 3 got.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The manifest digest, once the reference resolved to one.
    pub digest: Option<Digest>,
    /// Set only when every check of steps 1 to 3 passed.
    pub unpacked: Option<Unpacked>,
}

/// What `verify` found. Verified when every check passed.
#[derive(Debug)]
pub struct Verdict {
    pub capsule: Reference,
    pub digest: Option<Digest>,
    pub release: Option<ReleaseDoc>,
    pub resolved_image_digest: Option<Digest>,
    pub checks: Checks,
}

impl Verdict {
    pub fn verified(&self) -> bool {
        self.checks.all_ok()
    }
}

/// What `pull` fetched.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub capsule: Reference,
    pub digest: Digest,
    pub layer_digest: Digest,
    pub layer_size: u64,
    pub file_count: usize,
}

/// Runs blocking file work (hashing, unpacking) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure::failed(anyhow!("a worker thread failed: {e}")))
}

/// Steps 1 to 3: fetch `capsule` by digest, download and hash its layer into
/// `work`, and unpack it into `tree` (which must not exist yet, or be empty).
/// A failed check ends the fetch with `unpacked: None`; `Err` is for what
/// keeps the checks from running at all (network, local I/O).
pub async fn fetch<C: RegistryClient>(
    client: &C,
    capsule: &Reference,
    tree: &Path,
    work: &Path,
    checks: &mut Checks,
) -> Result<Fetched, Failure> {
    let repo = &capsule.repo;
    let mut out = Fetched::default();
    // Step 1. A tag is resolved first, so all that follows is fetched by digest.
    let digest = match (&capsule.digest, &capsule.tag) {
        (Some(digest), _) => digest.clone(),
        (None, Some(tag)) => match client.resolve(repo, tag).await.map_err(Failure::from)? {
            Some(digest) => digest,
            None => {
                checks.that("capsule", false, format_args!("{capsule} in the registry"), "no such tag");
                return Ok(out);
            }
        },
        (None, None) => return Err(Failure::input(anyhow!("{capsule}: give a tag or a digest"))),
    };
    out.digest = Some(digest.clone());
    let fetched = match client.manifest(repo, digest.as_str()).await {
        Ok(Some(fetched)) => fetched,
        Ok(None) => {
            checks.that("capsule", false, format_args!("{} in the registry", repo.with_digest(&digest)), "no such manifest");
            return Ok(out);
        }
        Err(RegistryError::Integrity { message, .. }) => {
            checks.that("manifest.digest", false, &digest, message);
            return Ok(out);
        }
        Err(e) => return Err(Failure::from(e)),
    };
    let Some(manifest) = verify::check_manifest(checks, &fetched.bytes, &digest) else { return Ok(out) };
    // Kargo decodes the config blob, so it must really be there (spec section 5).
    let config = Digest::of(crate::core::manifest::EMPTY_CONFIG);
    let config_present = client.blob_exists(repo, &config).await.map_err(Failure::from)?;
    if !checks.that(
        "config blob",
        config_present,
        format_args!("{config} in the registry"),
        if config_present { "present" } else { "missing" },
    ) {
        return Ok(out);
    }

    // Step 2. The client hashes while it writes and reports what it wrote; the
    // check against the descriptor is made here, not left to the client.
    let layer_file = work.join("layer.tar.gz");
    let (layer_digest, layer_size) = match client.blob_to_file(repo, &manifest.layer_digest, manifest.layer_size, &layer_file).await {
        Ok(written) => written,
        Err(RegistryError::Integrity { message, .. }) => {
            checks.that("layer.digest", false, &manifest.layer_digest, message);
            return Ok(out);
        }
        Err(RegistryError::Protocol { status: 404, .. }) => {
            checks.that("layer", false, format_args!("blob {} in the registry", manifest.layer_digest), "blob unknown");
            return Ok(out);
        }
        Err(e) => return Err(Failure::from(e)),
    };
    let unreadable = {
        let path = layer_file.display().to_string();
        move |e: io::Error| Failure::failed(anyhow::Error::new(e).context(format!("{path}: cannot be read")))
    };
    if !verify::check_layer(checks, &manifest, &layer_digest, layer_size) {
        return Ok(out);
    }

    // Step 3. Only now, with the digest matched, is the archive opened.
    let target = tree.to_owned();
    let unpacked = blocking(move || -> Result<Result<Vec<UnpackedFile>, UnpackError>, io::Error> {
        let layer = fs::File::open(&layer_file)?;
        Ok(unpack::unpack(BufReader::new(layer), &target))
    })
    .await?
    .map_err(&unreadable)?;
    let expected = "an archive spec section 2 allows";
    let files = match unpacked {
        Ok(files) => files,
        Err(e @ (UnpackError::Write { .. } | UnpackError::OutputNotEmpty { .. } | UnpackError::OutputIsLink { .. })) => {
            return Err(Failure::failed(e))
        }
        Err(e) => {
            checks.that("layer archive", false, expected, format_args!("{:#}", anyhow::Error::new(e)));
            return Ok(out);
        }
    };
    checks.that("layer archive", true, expected, format_args!("{} files", files.len()));
    out.unpacked = Some(Unpacked { manifest, files });
    Ok(out)
}

/// All four steps: `capsule` must be the release of `image` (a `git-<sha>`
/// tag), whose digest must be `image_digest` when given.
pub async fn verify<C: RegistryClient>(
    client: &C,
    capsule: &Reference,
    image: &Reference,
    image_digest: Option<&Digest>,
    tree: &Path,
    work: &Path,
) -> Result<Verdict, Failure> {
    let image_tag = image.tag.clone().ok_or_else(|| Failure::input(anyhow!("--image {image}: give the release tag, git-<sha>")))?;
    let mut checks = Checks::default();
    let fetched = fetch(client, capsule, tree, work, &mut checks).await?;
    let (mut release, mut resolved_image_digest) = (None, None);
    if let Some(unpacked) = fetched.unpacked {
        let expect = Expectations {
            image: image.repo.clone(),
            resolved_image_digest: client.resolve(&image.repo, &image_tag).await.map_err(Failure::from)?,
            image_tag,
            image_digest: image_digest.cloned(),
            capsule: capsule.repo.clone(),
            capsule_tag: capsule.tag.clone(),
        };
        // Only listed files are read: unpack made them, as regular files, under `tree`.
        let read = |path: &str| fs::read(tree.join(path)).ok();
        release = verify::check_release(&mut checks, &expect, &unpacked.manifest.manifest.annotations, &unpacked.files, &read);
        resolved_image_digest = expect.resolved_image_digest;
    }
    Ok(Verdict { capsule: capsule.clone(), digest: fetched.digest, release, resolved_image_digest, checks })
}

/// [`verify`], unpacking into `output` only when the capsule is verified.
pub async fn verify_into<C: RegistryClient>(
    client: &C,
    capsule: &Reference,
    image: &Reference,
    image_digest: Option<&Digest>,
    output: Option<&Path>,
) -> Result<Verdict, Failure> {
    let staged = output.map(stage_output).transpose()?;
    let work = crate::scratch::WorkDir::new()?;
    let tree = staged.as_ref().map_or_else(|| work.path().join("tree"), |s| s.dir.clone());
    let verdict = verify(client, capsule, image, image_digest, &tree, work.path()).await?;
    if let Some(staged) = staged.filter(|_| verdict.verified()) {
        staged.commit(Replaceable::Nothing).map_err(Failure::failed)?;
    }
    Ok(verdict)
}

/// Steps 1 to 3 into `output`, which is only written when they all pass.
pub async fn pull_into<C: RegistryClient>(client: &C, capsule: &Reference, output: &Path) -> Result<Pulled, Failure> {
    let staged = stage_output(output)?;
    let work = crate::scratch::WorkDir::new()?;
    let mut checks = Checks::default();
    let fetched = fetch(client, capsule, &staged.dir, work.path(), &mut checks).await?;
    let (Some(digest), Some(unpacked)) = (fetched.digest, fetched.unpacked) else {
        return Err(Failure::failed(failed_checks(&capsule.to_string(), &checks)));
    };
    staged.commit(Replaceable::Nothing).map_err(Failure::failed)?;
    Ok(Pulled {
        capsule: capsule.clone(),
        digest,
        layer_digest: unpacked.manifest.layer_digest,
        layer_size: unpacked.manifest.layer_size,
        file_count: unpacked.files.len(),
    })
}

/// `<what>: N of M checks failed` and the failed checks, one per line.
pub fn failed_checks(what: &str, checks: &Checks) -> anyhow::Error {
    let total = checks.iter().count();
    anyhow!("{what}: verification failed, {} of {total} checks failed:\n{}", checks.failure_count(), checks.failure_lines())
}

/// A staging directory beside `output`, which must be absent or empty.
fn stage_output(output: &Path) -> Result<Staged, Failure> {
    match fs::read_dir(output) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::input(anyhow!("output directory {}: is not empty; give a new or empty directory", output.display())));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure::input(anyhow::Error::new(e).context(format!("output directory {}: cannot be used", output.display()))))
        }
    }
    Staged::new(output).map_err(Failure::failed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::core::archive;
    use crate::core::capsule::{self, Built};
    use crate::core::ident::Repository;
    use crate::core::manifest::{self, Manifest, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE};
    use crate::core::package::{self, Package, PackageKind};
    use crate::core::release::{Release, SBOM_PATH};
    use crate::failure::FailureKind;
    use crate::registry::memory::MemoryRegistry;

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
            package::scan(&self.tmp.path().join("chart"), PackageKind::Helm).unwrap()
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
            let package = self.package();
            let r = self.release(&package, edit);
            let docs = capsule::documents(&r, &package, "chart", None, None).unwrap();
            let (built, layer): (Built, Vec<u8>) = capsule::write(&r, &package, &docs, Vec::new()).unwrap();
            self.store(tag, &built.manifest_bytes, &layer)
        }

        fn store(&self, tag: &str, manifest: &[u8], layer: &[u8]) -> Digest {
            self.reg.put_blob(&self.capsule, EMPTY_CONFIG);
            self.reg.put_blob(&self.capsule, layer);
            self.reg.put_manifest(&self.capsule, Some(tag), manifest, MANIFEST_MEDIA_TYPE)
        }

        fn capsule_ref(&self, tag: &str) -> Reference {
            Reference { repo: self.capsule.clone(), tag: Some(tag.to_owned()), digest: None }
        }
        fn by_digest(&self, digest: Digest) -> Reference {
            Reference { repo: self.capsule.clone(), tag: None, digest: Some(digest) }
        }
        fn image_ref(&self) -> Reference {
            Reference { repo: self.image.clone(), tag: Some(format!("git-{SHA}")), digest: None }
        }

        async fn verify(&self, capsule: &Reference, image_digest: Option<&Digest>, output: Option<&Path>) -> Result<Verdict, Failure> {
            verify_into(&self.reg, capsule, &self.image_ref(), image_digest, output).await
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
        let (layer, bytes) = archive::write_layer(entries, Vec::new()).unwrap();
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
        let fetched = w.reg.manifest(&w.capsule, good.as_str()).await.unwrap().unwrap();
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
}
