//! The trust chain of spec section 8 as one flow over a [`RegistryClient`]:
//! the manifest fetched by digest, the layer hashed as it lands on disk, a safe
//! unpack, then release.yaml against the image. `pull` runs the first three
//! steps, `verify` all four. An unpacked tree reaches its output directory only
//! when every step passed; until then it sits in a staging directory that is
//! removed when the flow fails.

mod fetch;

use std::any::Any;
use std::fs;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;

pub use self::fetch::fetch;
use crate::core::ident::{Digest, Repository};
use crate::core::reference::Reference;
use crate::core::release::ReleaseDoc;
use crate::core::tag::Tag;
use crate::core::unpack::UnpackedFile;
use crate::core::verify::{self, CapsuleManifest, ChartLayerFiles, Checks, Expectations};
use crate::failure::Failure;
use crate::layout::{Replaceable, Staged};
use crate::registry::RegistryClient;
use crate::sign::{self, keys::PublicKey};

/// A capsule that passed steps 1 to 3.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub manifest: CapsuleManifest,
    pub files: Vec<UnpackedFile>,
    /// Layer 1, the Helm chart, when the manifest has it (already compared with package/helm/).
    pub chart: Option<ChartLayerFiles>,
}

/// How far steps 1 to 3 got.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The manifest digest, once the reference resolved to one.
    pub digest: Option<Digest>,
    /// Set only when every check of steps 1 to 3 passed.
    pub unpacked: Option<Unpacked>,
    /// Something the capsule names was absent from the registry, or came back
    /// not matching its digest: the checks failed on what the registry served,
    /// not on the capsule's content, so the outcome says nothing lasting about
    /// the digest (the verifier service never caches it).
    pub unavailable: bool,
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

tokio::task_local! {
    /// What bounds the caller's concurrent work (the verifier service's
    /// permit). Blocking work started under it holds a share, so the bound is
    /// released when that work has really ended, not when the request that
    /// started it gave up waiting.
    static LEASE: Arc<dyn Any + Send + Sync>;
}

/// Runs `work` with `lease` held by every blocking job it starts, until each ends.
pub async fn holding<F: Future>(lease: Arc<dyn Any + Send + Sync>, work: F) -> F::Output {
    LEASE.scope(lease, work).await
}

/// Runs blocking file work (hashing, unpacking) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    let lease = LEASE.try_with(Arc::clone).ok();
    let job = move || {
        let _lease = lease;
        f()
    };
    tokio::task::spawn_blocking(job).await.map_err(|e| Failure::failed(anyhow!("a worker thread failed: {e}")))
}

/// What a verification asks: is `capsule` the release of `image` (a
/// `git-<sha>` tag), whose digest must be `image_digest` when given, and
/// signed by `public_key` when given?
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub capsule: &'a Reference,
    pub image: &'a Reference,
    pub image_digest: Option<&'a Digest>,
    pub public_key: Option<&'a PublicKey>,
}

/// Every step of spec section 8.
pub async fn verify<C: RegistryClient>(client: &C, q: Question<'_>, tree: &Path, work: &Path) -> Result<Verdict, Failure> {
    let image_tag = q.image.tag.clone().ok_or_else(|| Failure::input(anyhow!("--image {}: give the release tag, git-<sha>", q.image)))?;
    let mut checks = Checks::default();
    let fetched = fetch(client, q.capsule, tree, work, &mut checks).await?;
    let (verdict, _) = check_fetched(client, q, image_tag, fetched, tree, checks).await?;
    Ok(verdict)
}

/// Section 8 against the image the capsule's own release.yaml names,
/// `<image.repoURL>:git-<gitCommit>`: whether the capsule is the release of
/// the image it claims, with that image still where it says. What copying a
/// release somewhere else (Git freight) needs. The unpacked files come back
/// with the verdict.
pub async fn verify_as_named<C: RegistryClient>(
    client: &C,
    capsule: &Reference,
    public_key: Option<&PublicKey>,
    tree: &Path,
    work: &Path,
) -> Result<(Verdict, Vec<UnpackedFile>), Failure> {
    let mut checks = Checks::default();
    let fetched = fetch(client, capsule, tree, work, &mut checks).await?;
    let named = fetched.unpacked.as_ref().and_then(|_| {
        let doc = crate::core::release::parse(&fs::read_to_string(tree.join(crate::core::release::RELEASE_FILE)).ok()?).ok()?;
        let repo: Repository = doc.image.repo_url.as_deref()?.parse().ok()?;
        let sha: crate::core::ident::GitSha = doc.git_commit.as_deref()?.parse().ok()?;
        Some((Reference { repo, tag: Some(Tag::from(&sha)), digest: None }, Tag::from(&sha)))
    });
    let Some((image, tag)) = named else {
        if fetched.unpacked.is_some() {
            checks.that("release.yaml", false, "image.repoURL and gitCommit naming the release's image", "missing or invalid");
        }
        let verdict = Verdict { capsule: capsule.clone(), digest: fetched.digest, release: None, resolved_image_digest: None, checks };
        return Ok((verdict, Vec::new()));
    };
    let q = Question { capsule, image: &image, image_digest: None, public_key };
    check_fetched(client, q, tag, fetched, tree, checks).await
}

/// Step 4 (and the signature) on what steps 1 to 3 fetched.
async fn check_fetched<C: RegistryClient>(
    client: &C,
    q: Question<'_>,
    image_tag: Tag,
    fetched: Fetched,
    tree: &Path,
    mut checks: Checks,
) -> Result<(Verdict, Vec<UnpackedFile>), Failure> {
    let (capsule, image) = (q.capsule, q.image);
    let (mut release, mut resolved_image_digest, mut files) = (None, None, Vec::new());
    if let Some(unpacked) = fetched.unpacked {
        let expect = Expectations {
            image: image.repo.clone(),
            resolved_image_digest: client.resolve(&image.repo, (&image_tag).into()).await.map_err(Failure::from)?,
            image_tag: image_tag.to_string(),
            image_digest: q.image_digest.cloned(),
            capsule: capsule.repo.clone(),
            capsule_tag: capsule.tag.as_ref().map(Tag::to_string),
        };
        // Only listed files are read: unpack made them, as regular files, under `tree`.
        let read = |path: &str| fs::read(tree.join(path)).ok();
        release = verify::check_release(
            &mut checks,
            &expect,
            &unpacked.manifest.manifest.annotations,
            &unpacked.files,
            &read,
            unpacked.chart.as_ref(),
        );
        resolved_image_digest = expect.resolved_image_digest;
        if let (Some(key), Some(digest)) = (q.public_key, &fetched.digest) {
            check_signature(client, &mut checks, &capsule.repo, digest, key).await?;
        }
        files = unpacked.files;
    }
    Ok((Verdict { capsule: capsule.clone(), digest: fetched.digest, release, resolved_image_digest, checks }, files))
}

/// Check 5 of spec section 8: a valid signature by `key` (spec section 9).
pub async fn check_signature<C: RegistryClient>(
    client: &C,
    checks: &mut Checks,
    repo: &Repository,
    digest: &Digest,
    key: &PublicKey,
) -> Result<bool, Failure> {
    let finding = sign::find(client, repo, digest, key).await.map_err(Failure::from)?;
    Ok(checks.that(
        "signature",
        finding == sign::Finding::Signed,
        format_args!("a valid signature by {}", key.describe()),
        finding.describe(),
    ))
}

/// [`verify`], unpacking into `output` only when the capsule is verified.
pub async fn verify_into<C: RegistryClient>(client: &C, q: Question<'_>, output: Option<&Path>) -> Result<Verdict, Failure> {
    let staged = output.map(stage_output).transpose()?;
    let work = crate::scratch::WorkDir::new()?;
    let tree = staged.as_ref().map_or_else(|| work.path().join("tree"), |s| s.dir.clone());
    let verdict = verify(client, q, &tree, work.path()).await?;
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
mod tests;
