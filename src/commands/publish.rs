//! `release-capsule publish`: resolve (or push) the image, build the capsule,
//! and push it by the rules of spec section 7.
//!
//! The flow, [`publish_with`], is generic over [`RegistryClient`]. Every input
//! problem is found before the first write:
//! 1. The image. With `--image-layout`, the layout is read and checked (every
//!    blob present, sizes right) and its digest taken from index.json; it will
//!    be pushed as `<image>:git-<sha>` unless the tag already names it.
//!    Without, `<image>:git-<sha>` is resolved in the registry. Either way the
//!    digest is the manifest's, or the index's for a multi-arch image. The
//!    capsule tag is resolved at the same time.
//! 2. The date (spec section 5): the image's own; else `--created` /
//!    `SOURCE_DATE_EPOCH`; else the commit date from the caller's
//!    [`CommitDateSource`] (the action asks the GitHub API); never the clock.
//! 3. The capsule is built exactly as `build` builds it (same `prepare`, same
//!    layout writer, into a temporary layout), so both give one digest.
//! 4. Immutability. Capsule tag on the same digest: nothing to do. On another
//!    capsule of the same release (equal gitCommit, image.digest,
//!    package.digest): kept. Anything else is a conflict (exit 1) unless
//!    `--on-conflict overwrite`. The image tag gets the same treatment, so a
//!    rebuilt image never silently replaces the one a published capsule names.
//! 5. Then the writes: the image (blobs, child manifests, the tagged root), then
//!    the capsule (blobs, skipping those the registry has, then the manifest),
//!    each read back by digest before success is reported.

use std::future::Future;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::anyhow;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cli::{OnConflict, PublishArgs};
use crate::commands::build;
use crate::core::capsule::{Built, MAX_LAYER_SIZE};
use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::image_date::{self, Child, ImageDoc};
use crate::core::manifest::{Descriptor, Manifest, ARTIFACT_TYPE, EMPTY_CONFIG, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::core::package::Diagnostic;
use crate::core::release::{self, ReleaseDoc};
use crate::core::timestamp::Created;
use crate::core::unpack;
use crate::failure::{Classify, Failure, FailureKind};
use crate::image_layout::{BlobLocation, ImageLayout, PushPlan};
use crate::layout;
use crate::registry::{ClientOptions, OciRegistry, RegistryClient, RegistryError};
use crate::report::{self, CapsuleReport};
use crate::settings::{Env, PublishSettings};

/// Blob uploads in flight at once: enough to overlap reading, hashing and the
/// network, few enough that memory stays flat (one 4 MiB chunk each).
pub const PARALLEL_UPLOADS: usize = 4;
/// Image configs are small JSON; anything bigger is not one.
const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;
/// Index children looked at for a build date (multi-arch images have a few).
const MAX_DATE_CHILDREN: usize = 32;

/// What a publish did, for the CLI's output and the action's outputs,
/// check run and summary.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub report: CapsuleReport,
    /// A new capsule (or a moved tag) was pushed; false when the tag already
    /// named this release, and on a dry run.
    pub published: bool,
    /// The image was pushed from `--image-layout` by this run.
    pub image_pushed: bool,
    pub dry_run: bool,
    /// Package warnings, for annotations.
    pub warnings: Vec<Diagnostic>,
    /// A sentence for logs and the check run ("pushed …", "already published …").
    pub message: String,
    /// HTTP requests made to registries (retries and token requests included).
    pub http_requests: u64,
}

/// A boxed future, so [`CommitDateSource`] can be used as `&dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the commit's committer date comes from when the image has no usable
/// build date and none was given (the action asks the GitHub API).
pub trait CommitDateSource: Send + Sync {
    fn commit_date<'a>(&'a self, sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>>;
}

/// The whole publish flow against the real registry.
pub async fn publish(s: &PublishSettings, commit_dates: Option<&dyn CommitDateSource>) -> Result<PublishOutcome, Failure> {
    let client = OciRegistry::new(&s.credentials, ClientOptions { push: !s.dry_run, ..ClientOptions::default() }).map_err(Failure::from)?;
    let result = publish_with(&client, s, commit_dates).await;
    debug(&format!("{} HTTP requests to registries", client.requests()));
    let mut outcome = result?;
    outcome.http_requests = client.requests();
    Ok(outcome)
}

pub fn run(args: &PublishArgs, env: Env) -> Result<(), Failure> {
    let s = PublishSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    // The CLI's fallback date is --created / SOURCE_DATE_EPOCH, already in the settings.
    let outcome = super::block_on(publish(&s, None))?;
    if s.capsule.json {
        report::print_json(&PublishJson {
            report: &outcome.report,
            published: outcome.published,
            image_pushed: outcome.image_pushed,
            dry_run: outcome.dry_run,
            message: &outcome.message,
            http_requests: outcome.http_requests,
        });
    } else {
        println!("{}", outcome.message);
        for line in outcome.report.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublishJson<'a> {
    #[serde(flatten)]
    report: &'a CapsuleReport,
    published: bool,
    image_pushed: bool,
    dry_run: bool,
    message: &'a str,
    http_requests: u64,
}

/// The image the capsule is for.
struct ImageFacts {
    digest: Digest,
    created: Option<Created>,
    /// A layout to push as `<image>:git-<sha>` once everything is checked.
    to_push: Option<(PushPlan, PathBuf)>,
}

/// A capsule already under the tag, as read back.
struct Existing {
    digest: Digest,
    manifest: Manifest,
    theirs: ReleaseDoc,
}

/// What to do with the capsule tag (spec section 7).
enum CapsuleAction {
    Push,
    /// The tag names this very capsule.
    Unchanged,
    /// The tag names another capsule of the same release: keep it.
    KeepSameRelease(Box<Existing>),
    /// The tag names a different release and the user said overwrite.
    Overwrite {
        digest: Digest,
    },
}

/// The flow of the module docs, against any registry client. Everything that
/// can be wrong with the input (layout, date, package, conflicts) is found
/// before the first write.
pub async fn publish_with<R: RegistryClient>(
    registry: &R,
    s: &PublishSettings,
    commit_dates: Option<&dyn CommitDateSource>,
) -> Result<PublishOutcome, Failure> {
    let c = &s.capsule;
    let tag = c.sha.tag();
    // Local input first: a chart problem is reported even when the image is not
    // in the registry yet (a pull request that only annotates).
    let package = build::scan_package(c)?;
    // The capsule tag does not depend on the image: resolve both at once.
    let image = async {
        match &s.image_layout {
            Some(path) => inspect_image_layout(registry, s, path, &tag).await,
            None => resolve_image(registry, s, &tag).await,
        }
    };
    let (image, existing) = futures_util::future::join(image, registry.resolve(&c.capsule, &tag)).await;
    let mut image = image?;
    let existing = existing.map_err(Failure::from)?;
    let created = choose_created(s, &image, commit_dates).await?;

    let (release, package, docs) = build::prepare(c, package, image.digest.clone(), created)?;
    let work = crate::scratch::WorkDir::new()?;
    let capsule_layout = work.path().join("capsule");
    let built = build::write_outputs(c, &capsule_layout, &release, &package, &docs)?;
    let ours = release::parse(&String::from_utf8_lossy(&docs.release_yaml)).or_fail(FailureKind::Failed)?;
    let action = capsule_action(registry, s, existing, &built, &ours, work.path()).await?;

    // Checked; now write. The image first: the capsule names it.
    let image_needs_push = image.to_push.is_some();
    let image_pushed = match image.to_push.take() {
        Some((plan, path)) if !s.dry_run => {
            push_plan(registry, &c.image, &tag, plan, &path).await?;
            true
        }
        _ => false,
    };
    let published = matches!(action, CapsuleAction::Push | CapsuleAction::Overwrite { .. }) && !s.dry_run;
    if published {
        push_capsule(registry, &c.capsule, &capsule_layout, &built, &tag).await?;
    }

    let mut report = CapsuleReport::new(&release, &package, &built);
    let capsule_ref = c.capsule.with_tag(&tag);
    let (publish_verb, overwrite_verb, push_verb) =
        if s.dry_run { ("would publish", "would overwrite", "would push") } else { ("published", "overwrote", "pushed") };
    let mut message = match &action {
        CapsuleAction::Push => format!("{publish_verb} {capsule_ref} ({})", built.digest),
        CapsuleAction::Unchanged => format!("already published: {capsule_ref} is {}; nothing to push", built.digest),
        CapsuleAction::KeepSameRelease(kept) => {
            let Existing { digest, manifest, theirs } = kept.as_ref();
            describe_existing(&mut report, &c.capsule, digest, manifest, theirs);
            format!(
                "already published: {capsule_ref} is {digest}, a capsule of the same release (same commit, image and package digests) \
                 where this run built {}; keeping the published one",
                built.digest
            )
        }
        CapsuleAction::Overwrite { digest } => {
            format!("{overwrite_verb} {capsule_ref}: it named {digest}, a different release; now {}", built.digest)
        }
    };
    if image_needs_push {
        message = format!("{push_verb} image {}:{tag} ({}); {message}", c.image, image.digest);
    }
    if s.dry_run {
        message = format!("dry run, nothing pushed: {message}");
    }
    Ok(PublishOutcome { report, published, image_pushed, dry_run: s.dry_run, warnings: package.warnings, message, http_requests: 0 })
}

/// Decides from what the capsule tag resolved to (spec section 7); a conflict
/// without `--on-conflict overwrite` is an error naming both digests.
async fn capsule_action<R: RegistryClient>(
    registry: &R,
    s: &PublishSettings,
    existing: Option<Digest>,
    built: &Built,
    ours: &ReleaseDoc,
    work: &Path,
) -> Result<CapsuleAction, Failure> {
    let c = &s.capsule;
    let tag = c.sha.tag();
    let Some(digest) = existing else {
        return Ok(CapsuleAction::Push);
    };
    if digest == built.digest {
        return Ok(CapsuleAction::Unchanged);
    }
    let existing = existing_release(registry, &c.capsule, &digest, work).await?;
    match existing {
        Some((theirs, manifest)) if theirs.same_release_as(ours) => {
            Ok(CapsuleAction::KeepSameRelease(Box::new(Existing { digest, manifest, theirs })))
        }
        _ if s.on_conflict == OnConflict::Overwrite => Ok(CapsuleAction::Overwrite { digest }),
        theirs => Err(Failure::failed(anyhow!(
            "capsule {}:{tag} already names a different release: the tag points to {digest}, this build is {}{}; \
             published capsule tags are immutable (Kargo caches them by tag). To replace it anyway, re-run with --on-conflict overwrite",
            c.capsule,
            built.digest,
            differences(theirs.as_ref().map(|(t, _)| t), ours)
        ))),
    }
}

/// Uploads the capsule's blobs (skipping those present), PUTs its manifest
/// under the tag and reads it back by digest.
async fn push_capsule<R: RegistryClient>(registry: &R, repo: &Repository, dir: &Path, built: &Built, tag: &str) -> Result<(), Failure> {
    let config = Digest::of(EMPTY_CONFIG);
    let blobs = vec![
        (config.clone(), BlobLocation { file: layout::blob_path(dir, &config), offset: 0, size: EMPTY_CONFIG.len() as u64 }),
        (built.layer.digest.clone(), BlobLocation { file: layout::blob_path(dir, &built.layer.digest), offset: 0, size: built.layer.size }),
    ];
    push_blobs(registry, repo, blobs).await.map_err(Failure::from)?;
    registry.push_manifest(repo, tag, MANIFEST_MEDIA_TYPE, &built.manifest_bytes).await.map_err(Failure::from)?;
    read_back(registry, repo, &built.digest).await
}

/// Spec section 7: success only once the registry serves what was pushed.
/// The client retries "not found" for what it just wrote, so `None` here
/// means the registry kept not having it.
async fn read_back<R: RegistryClient>(registry: &R, repo: &Repository, digest: &Digest) -> Result<(), Failure> {
    match registry.manifest(repo, digest.as_str()).await.map_err(Failure::from)? {
        Some(m) if &m.digest == digest => Ok(()),
        Some(m) => Err(Failure::failed(anyhow!("{repo}@{digest}: reading the pushed manifest back gave {}", m.digest))),
        None => Err(Failure::network(anyhow!(
            "{repo}@{digest}: the manifest was accepted but cannot be read back; the registry may still be settling, re-run to check"
        ))),
    }
}

/// Uploads blobs in parallel (bounded), skipping those the registry has.
async fn push_blobs<R: RegistryClient>(registry: &R, repo: &Repository, blobs: Vec<(Digest, BlobLocation)>) -> Result<(), RegistryError> {
    futures_util::stream::iter(blobs)
        .map(|(digest, loc)| async move {
            if registry.blob_exists(repo, &digest).await? {
                debug(&format!("{repo}@{digest}: already in the registry"));
                return Ok(());
            }
            registry.push_blob_file(repo, &digest, &loc.file, loc.offset, loc.size).await?;
            eprintln!("  pushed blob {} ({})", digest.short(), report::human_size(loc.size));
            Ok::<(), RegistryError>(())
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Step 1 without a layout: what `<image>:git-<sha>` is in the registry.
async fn resolve_image<R: RegistryClient>(registry: &R, s: &PublishSettings, tag: &str) -> Result<ImageFacts, Failure> {
    let repo = &s.capsule.image;
    let fetched = registry.manifest(repo, tag).await.map_err(Failure::from)?.ok_or_else(|| {
        Failure::input(anyhow!(
            "image {repo}:{tag} is not in the registry; push the image with that tag first, or pass --image-layout to push it from an OCI image layout"
        ))
    })?;
    check_given_digest(s, &fetched.digest, &format!("{repo}:{tag} resolves to"))?;
    eprintln!("image {repo}:{tag} is {}", fetched.digest);
    let created = image_created(&RegistryImage { registry, repo }, &fetched.bytes, &format!("{repo}@{}", fetched.digest)).await?;
    Ok(ImageFacts { digest: fetched.digest, created, to_push: None })
}

/// Step 1 with a layout: read and check it (nothing is pushed yet); it is to
/// be pushed unless the tag already names it.
async fn inspect_image_layout<R: RegistryClient>(registry: &R, s: &PublishSettings, path: &Path, tag: &str) -> Result<ImageFacts, Failure> {
    let repo = &s.capsule.image;
    // Everything wrong with a layout (unreadable, incomplete, corrupt) is the input's.
    let layout = ImageLayout::open(path).map_err(Failure::input)?;
    let root = layout.select(tag).map_err(Failure::input)?.clone();
    let plan = layout.plan(&root).map_err(Failure::input)?;
    let digest = plan.root.digest.clone();
    check_given_digest(s, &digest, &format!("--image-layout {} holds", path.display()))?;
    let created = image_created(&LayoutImage(&layout), &plan.root.bytes, &format!("--image-layout {}", path.display())).await?;

    let to_push = match registry.resolve(repo, tag).await.map_err(Failure::from)? {
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
        _ => {
            let verb = if s.dry_run { "dry run: would push" } else { "will push" };
            eprintln!("{verb} image {repo}:{tag} ({digest}): {} blobs, {}", plan.blobs.len(), report::human_size(plan.total_blob_bytes()));
            Some((plan, path.to_owned()))
        }
    };
    Ok(ImageFacts { digest, created, to_push })
}

async fn push_plan<R: RegistryClient>(registry: &R, repo: &Repository, tag: &str, plan: PushPlan, path: &Path) -> Result<(), Failure> {
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
    push_blobs(registry, repo, plan.blobs).await.map_err(local_is_input)?;
    for m in &plan.children {
        registry.push_manifest(repo, m.digest.as_str(), &m.media_type, &m.bytes).await.map_err(Failure::from)?;
    }
    registry.push_manifest(repo, tag, &plan.root.media_type, &plan.root.bytes).await.map_err(Failure::from)?;
    read_back(registry, repo, &plan.root.digest).await
}

fn check_given_digest(s: &PublishSettings, actual: &Digest, what: &str) -> Result<(), Failure> {
    match &s.capsule.image_digest {
        Some(given) if given != actual => Err(Failure::input(anyhow!(
            "--image-digest is {given}, but {what} {actual}; the capsule must name the image its tag resolves to, so drop --image-digest or fix it"
        ))),
        _ => Ok(()),
    }
}

/// Step 2: which date the capsule carries.
async fn choose_created(s: &PublishSettings, image: &ImageFacts, commit_dates: Option<&dyn CommitDateSource>) -> Result<Created, Failure> {
    let c = &s.capsule;
    if let Some(from_image) = image.created {
        if let Some(given) = c.created.filter(|g| *g != from_image) {
            debug(&format!(
                "using the image's build date {from_image}, not the given {given} (--created/SOURCE_DATE_EPOCH): capsules must order as their images do"
            ));
        }
        return Ok(from_image);
    }
    if let Some(given) = c.created {
        debug(&format!("the image has no usable build date; using the given {given}"));
        return Ok(given);
    }
    if let Some(source) = commit_dates {
        let found = source
            .commit_date(&c.sha)
            .await
            .map_err(|e| Failure::network(e.context(format!("looking up the committer date of {}", c.sha))))?;
        if let Some(date) = found {
            debug(&format!("the image has no usable build date; using the committer date of {}: {date}", c.sha));
            return Ok(date);
        }
    }
    Err(Failure::input(anyhow!(
        "image {}@{} has no usable build date (no org.opencontainers.image.created annotation or label, and its config's created is \
         missing or the Unix epoch); pass --created with an RFC 3339 date or set SOURCE_DATE_EPOCH, for example \
         SOURCE_DATE_EPOCH=$(git log -1 --format=%ct {}), or label the image with org.opencontainers.image.created",
        c.image,
        image.digest,
        c.sha
    )))
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
        let m = self.registry.manifest(self.repo, child.digest.as_str()).await.map_err(Failure::from)?;
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

/// The release.yaml of the capsule `digest` already tagged, if it is a v1
/// capsule whose archive unpacks safely; `None` for anything else (which is
/// then a different release).
async fn existing_release<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    digest: &Digest,
    work: &Path,
) -> Result<Option<(ReleaseDoc, Manifest)>, Failure> {
    let Some(fetched) = registry.manifest(repo, digest.as_str()).await.map_err(Failure::from)? else {
        return Ok(None);
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&fetched.bytes) else {
        debug(&format!("{repo}@{digest}: not an OCI image manifest"));
        return Ok(None);
    };
    let layer = match manifest.layers.first() {
        Some(l)
            if manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE) && l.media_type == LAYER_MEDIA_TYPE && l.size <= MAX_LAYER_SIZE =>
        {
            l
        }
        _ => {
            debug(&format!("{repo}@{digest}: not a v1 release capsule"));
            return Ok(None);
        }
    };
    let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
        return Ok(None);
    };
    let archive = work.join("existing.tar.gz");
    registry.blob_to_file(repo, &layer_digest, MAX_LAYER_SIZE, &archive).await.map_err(Failure::from)?;
    let out = work.join("existing");
    let file = std::fs::File::open(&archive)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("{}: cannot be read", archive.display()))))?;
    if let Err(e) = unpack::unpack(BufReader::new(file), &out) {
        debug(&format!("{repo}@{digest}: its archive does not unpack: {e}"));
        return Ok(None);
    }
    let Ok(text) = std::fs::read_to_string(out.join(release::RELEASE_FILE)) else {
        return Ok(None);
    };
    Ok(release::parse(&text).ok().map(|doc| (doc, manifest)))
}

/// Which of the identifying fields differ, for the conflict message.
fn differences(theirs: Option<&ReleaseDoc>, ours: &ReleaseDoc) -> String {
    let Some(t) = theirs else {
        return " (the published one is not a readable v1 capsule)".into();
    };
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    let mut diffs = Vec::new();
    if t.git_commit != ours.git_commit {
        diffs.push(format!("gitCommit {} vs {}", show(&t.git_commit), show(&ours.git_commit)));
    }
    if t.image.digest != ours.image.digest {
        diffs.push(format!("image.digest {} vs {}", show(&t.image.digest), show(&ours.image.digest)));
    }
    if t.package.digest != ours.package.digest {
        diffs.push(format!("package.digest {} vs {}", show(&t.package.digest), show(&ours.package.digest)));
    }
    if diffs.is_empty() {
        String::new()
    } else {
        format!(" (published vs this build: {})", diffs.join("; "))
    }
}

/// The report of a kept capsule describes what the tag points to.
fn describe_existing(report: &mut CapsuleReport, repo: &Repository, digest: &Digest, manifest: &Manifest, theirs: &ReleaseDoc) {
    report.digest = digest.to_string();
    report.reference = repo.with_digest(digest);
    if let Some(l) = manifest.layers.first() {
        report.layer_digest = l.digest.clone();
        report.layer_size = l.size;
    }
    if let Some(created) = &theirs.created {
        report.created = created.clone();
    }
}

/// Detail for whoever debugs a run: a GitHub debug line in Actions (shown
/// when debug logging is on), else stderr when RELEASE_CAPSULE_DEBUG is set.
fn debug(msg: &str) {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        eprintln!("::debug::{msg}");
    } else if env("RELEASE_CAPSULE_DEBUG").is_some() {
        eprintln!("debug: {msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::CapsuleArgs;
    use crate::settings::{CapsuleSettings, RegistryCredentials};

    fn settings(created: Option<&str>) -> PublishSettings {
        let args = CapsuleArgs {
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            image: Some("ghcr.io/acme/app".into()),
            source_repository: Some("https://github.com/acme/app".into()),
            package_kind: "helm".into(),
            package_path: Some("chart".into()),
            created: created.map(str::to_owned),
            ..Default::default()
        };
        PublishSettings {
            capsule: CapsuleSettings::resolve(&args, &|_| None).unwrap(),
            credentials: RegistryCredentials::default(),
            image_layout: None,
            on_conflict: OnConflict::Fail,
            dry_run: false,
        }
    }

    fn image(created: Option<&str>) -> ImageFacts {
        ImageFacts { digest: Digest::of(b"image"), created: created.map(|c| c.parse().unwrap()), to_push: None }
    }

    struct FromApi(Option<&'static str>);
    impl CommitDateSource for FromApi {
        fn commit_date<'a>(&'a self, _sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>> {
            Box::pin(async move { Ok(self.0.map(|d| d.parse().unwrap())) })
        }
    }

    struct Broken;
    impl CommitDateSource for Broken {
        fn commit_date<'a>(&'a self, _sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>> {
            Box::pin(async { Err(anyhow!("api down")) })
        }
    }

    async fn pick(given: Option<&str>, from_image: Option<&str>, source: Option<&dyn CommitDateSource>) -> Result<Created, Failure> {
        choose_created(&settings(given), &image(from_image), source).await
    }

    #[tokio::test]
    async fn the_image_date_wins_then_the_given_one_then_the_commit() {
        let api = FromApi(Some("2024-01-01T00:00:00Z"));
        let (image_date, given) = ("2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z");
        assert_eq!(pick(Some(given), Some(image_date), Some(&api)).await.unwrap().to_string(), image_date);
        assert_eq!(pick(Some(given), None, Some(&api)).await.unwrap().to_string(), given);
        assert_eq!(pick(None, None, Some(&api)).await.unwrap().to_string(), "2024-01-01T00:00:00Z");
        // Nothing anywhere: an input error saying what to pass.
        for source in [None, Some(&FromApi(None) as &dyn CommitDateSource)] {
            let e = pick(None, None, source).await.unwrap_err();
            assert_eq!(e.kind, FailureKind::Input);
            assert!(e.to_string().contains("--created") && e.to_string().contains("SOURCE_DATE_EPOCH"), "{e}");
        }
        // A failing lookup is the network's fault, and says what it was doing.
        let e = pick(None, None, Some(&Broken)).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Network);
        assert!(e.to_string().contains("committer date of 0123456789abcdef0123456789abcdef01234567"), "{e}");
    }
}
