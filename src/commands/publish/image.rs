//! Step 1 of publish: the image the capsule is for. Resolved in the registry,
//! or read from `--image-layout` and pushed as `<image>:git-<sha>` by the same
//! tag protocol as the capsule ([`super::tagging`]), so a rebuilt image never
//! silently replaces the one a published capsule names. Also the image's build
//! date, read the way Kargo reads it (spec section 5).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::debug;
use super::tagging::{self, Claim, TagWrite};
use crate::cancel::Cancel;
use crate::cli::OnConflict;
use crate::core::ident::{Digest, Repository};
use crate::core::image_date::{self, Child, ImageDoc};
use crate::core::manifest::Descriptor;
use crate::core::tag::Tag;
use crate::core::timestamp::Created;
use crate::failure::Failure;
use crate::image_layout::{ImageLayout, PushPlan};
use crate::registry::{RegistryClient, RegistryError};
use crate::report;
use crate::settings::PublishSettings;

/// Image configs are small JSON; anything bigger is not one.
const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;
/// Index children looked at for a build date (multi-arch images have a few).
const MAX_DATE_CHILDREN: usize = 32;

/// The image the capsule is for.
pub(super) struct ImageFacts {
    pub digest: Digest,
    pub created: Option<Created>,
    /// How long reading the build date took (spec-mandated work, timed apart).
    pub date_lookup: Duration,
    /// A layout to push as `<image>:git-<sha>` once everything is checked,
    /// and what the tag named when that was decided.
    pub to_push: Option<LayoutPush>,
}

pub(super) struct LayoutPush {
    plan: PushPlan,
    path: PathBuf,
    /// The image tag when this run looked (absent, or the image to overwrite).
    previous: Option<Digest>,
}

/// Without a layout: what `<image>:git-<sha>` is in the registry; `None`
/// when the tag does not exist.
pub(super) async fn resolve_image<R: RegistryClient>(registry: &R, s: &PublishSettings, tag: &Tag) -> Result<Option<ImageFacts>, Failure> {
    let repo = &s.capsule.image;
    let Some(fetched) = registry.manifest(repo, tag.into()).await.map_err(Failure::from)? else {
        return Ok(None);
    };
    check_given_digest(s, &fetched.digest, &format!("{repo}:{tag} resolves to"))?;
    eprintln!("image {repo}:{tag} is {}", fetched.digest);
    let started = Instant::now();
    let created = image_created(&RegistryImage { registry, repo }, &fetched.bytes, &format!("{repo}@{}", fetched.digest)).await?;
    Ok(Some(ImageFacts { digest: fetched.digest, created, date_lookup: started.elapsed(), to_push: None }))
}

/// The error for an image tag that does not exist.
pub(super) fn missing_image(repo: &Repository, tag: &str) -> Failure {
    Failure::input(anyhow!(
        "image {repo}:{tag} is not in the registry; push the image with that tag first, or pass --image-layout to push it from an OCI image layout"
    ))
}

/// With a layout: read and check it (nothing is pushed yet); it is to be
/// pushed unless the tag already names it.
pub(super) async fn inspect_image_layout<R: RegistryClient>(
    registry: &R,
    s: &PublishSettings,
    path: &Path,
    tag: &Tag,
) -> Result<ImageFacts, Failure> {
    let repo = &s.capsule.image;
    // Everything wrong with a layout (unreadable, incomplete, corrupt) is the input's.
    let layout = ImageLayout::open(path).map_err(Failure::input)?;
    let root = layout.select(tag).map_err(Failure::input)?.clone();
    let plan = layout.plan(&root).map_err(Failure::input)?;
    let digest = plan.root.digest.clone();
    check_given_digest(s, &digest, &format!("--image-layout {} holds", path.display()))?;
    let started = Instant::now();
    let created = image_created(&LayoutImage(&layout), &plan.root.bytes, &format!("--image-layout {}", path.display())).await?;
    let date_lookup = started.elapsed();

    let to_push = match registry.resolve(repo, tag.into()).await.map_err(Failure::from)? {
        Some(d) if d == digest => {
            eprintln!("image {repo}:{tag} is already {digest}; not pushing it again");
            None
        }
        Some(d) if s.on_conflict != OnConflict::Overwrite => {
            return Err(Failure::failed(anyhow!(
                "image {repo}:{tag} already points to {d}, but --image-layout {} holds {digest}; a release's image tag must not move under a \
                 published capsule. Build the image reproducibly, publish without --image-layout to use the image already there, \
                 or re-run with --on-conflict overwrite",
                path.display()
            )));
        }
        previous => {
            let verb = if s.dry_run { "dry run: would push" } else { "will push" };
            eprintln!("{verb} image {repo}:{tag} ({digest}): {} blobs, {}", plan.blobs.len(), report::human_size(plan.total_blob_bytes()));
            Some(LayoutPush { plan, path: path.to_owned(), previous })
        }
    };
    Ok(ImageFacts { digest, created, date_lookup, to_push })
}

/// Pushes the layout: blobs, child manifests by digest, then the tag by the
/// race protocol. Another image under the tag is always a conflict: an
/// image is its digest. Whether this run's `PUT` made the tag (`imagePushed`),
/// settled through a claim register in `capsule_repo`.
pub(super) async fn push_layout<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    capsule_repo: &Repository,
    tag: &Tag,
    push: LayoutPush,
    cancel: &Cancel,
) -> Result<bool, Failure> {
    let LayoutPush { plan, path, previous } = push;
    eprintln!(
        "pushing image {repo}:{tag} ({}) from {}: {} blobs, {}",
        plan.root.digest,
        path.display(),
        plan.blobs.len(),
        report::human_size(plan.total_blob_bytes())
    );
    let local_is_input = |e: RegistryError| match e {
        RegistryError::Local { .. } => Failure::input(e),
        other => Failure::from(other),
    };
    cancel
        .guard("uploading the image's blobs", async { tagging::push_blobs(registry, repo, plan.blobs).await.map_err(local_is_input) })
        .await?;
    for m in &plan.children {
        cancel.check("pushing the image's manifests")?;
        registry.push_manifest(repo, (&m.digest).into(), &m.media_type, &m.bytes).await.map_err(Failure::from)?;
    }
    let write = TagWrite {
        repo,
        tag,
        register: capsule_repo,
        media_type: &plan.root.media_type,
        bytes: &plan.root.bytes,
        digest: &plan.root.digest,
        previous: previous.as_ref(),
        what: "image",
    };
    let claim = tagging::claim_tag(registry, &write, cancel, |_other| async { Ok(false) }).await?;
    match claim {
        Claim::Made => Ok(true),
        Claim::Found => Ok(false),
        Claim::Other(other) => Err(tagging::lost(&write, &other, "")),
    }
}

fn check_given_digest(s: &PublishSettings, actual: &Digest, what: &str) -> Result<(), Failure> {
    match &s.capsule.image_digest {
        Some(given) if given != actual => Err(Failure::input(anyhow!(
            "--image-digest is {given}, but {what} {actual}; the capsule must name the image its tag resolves to, so drop --image-digest or fix it"
        ))),
        _ => Ok(()),
    }
}

/// Where the image's documents are read from: the registry or the layout.
trait ImageSource: Sync {
    fn manifest_bytes(&self, child: &Child) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send;
    fn config_bytes(&self, child: &Child) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send;
}

struct RegistryImage<'a, R> {
    registry: &'a R,
    repo: &'a Repository,
}

impl<R: RegistryClient> ImageSource for RegistryImage<'_, R> {
    async fn manifest_bytes(&self, child: &Child) -> Result<Vec<u8>, Failure> {
        let m = self.registry.manifest(self.repo, (&child.digest).into()).await.map_err(Failure::from)?;
        m.map(|m| m.bytes)
            .ok_or_else(|| Failure::failed(anyhow!("{}@{}: named by the image index but not in the registry", self.repo, child.digest)))
    }
    async fn config_bytes(&self, child: &Child) -> Result<Vec<u8>, Failure> {
        self.registry.blob_bytes(self.repo, &child.digest, MAX_CONFIG_SIZE).await.map_err(Failure::from)
    }
}

struct LayoutImage<'a>(&'a ImageLayout);

impl LayoutImage<'_> {
    fn read(&self, child: &Child, what: &str) -> Result<Vec<u8>, Failure> {
        let d = Descriptor {
            media_type: child.media_type.clone(),
            digest: child.digest.to_string(),
            size: child.size,
            artifact_type: None,
            annotations: Default::default(),
        };
        self.0.read_json_blob(&d, what).map_err(Failure::input)
    }
}

impl ImageSource for LayoutImage<'_> {
    async fn manifest_bytes(&self, child: &Child) -> Result<Vec<u8>, Failure> {
        self.read(child, "manifest")
    }
    async fn config_bytes(&self, child: &Child) -> Result<Vec<u8>, Failure> {
        self.read(child, "config")
    }
}

/// The image's build date by spec section 5, or `None` when it has none.
async fn image_created<S: ImageSource>(src: &S, root: &[u8], what: &str) -> Result<Option<Created>, Failure> {
    let mut dates = Vec::new();
    let mut queue = vec![(root.to_vec(), 0usize)];
    let mut looked_at = 0;
    while let Some((bytes, depth)) = queue.pop() {
        let doc = image_date::read(&bytes).map_err(|m| Failure::input(anyhow!("{what}: {m}")))?;
        match doc {
            ImageDoc::Manifest { annotated: Some(d), .. } | ImageDoc::Index { annotated: Some(d), .. } => dates.push(d),
            ImageDoc::Manifest { config, .. } => {
                if config.size <= MAX_CONFIG_SIZE {
                    dates.extend(image_date::from_config(&src.config_bytes(&config).await?));
                }
            }
            ImageDoc::Index { children, .. } if depth < 2 => {
                for child in children.iter().take(MAX_DATE_CHILDREN) {
                    looked_at += 1;
                    queue.push((src.manifest_bytes(child).await?, depth + 1));
                }
            }
            ImageDoc::Index { .. } => {}
        }
    }
    let newest = image_date::newest(dates.into_iter().map(Some));
    match newest {
        Some(d) => debug(&format!(
            "{what}: build date {d}{}",
            if looked_at > 0 { format!(" (newest of {looked_at} children)") } else { String::new() }
        )),
        None => debug(&format!("{what}: no usable build date")),
    }
    Ok(newest)
}
