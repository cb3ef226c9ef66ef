//! `release-capsule publish`: resolve (or push) the image, build the capsule,
//! and push it by the rules of spec section 7.
//!
//! The flow, [`publish_with`], is generic over [`RegistryClient`]. Every input
//! problem is found before the first write:
//! 1. The image ([`image`]): resolved in the registry, or read and checked
//!    from `--image-layout` (to be pushed unless the tag already names it).
//!    The capsule tag is resolved at the same time.
//! 2. The date ([`created`]): the image's own, else `--created` /
//!    `SOURCE_DATE_EPOCH`, else the commit date; never the clock.
//! 3. The capsule is built exactly as `build` builds it (same `prepare`, same
//!    layout writer, into a temporary layout), so both give one digest.
//! 4. Immutability ([`immutability`]): same digest, nothing to do; another
//!    capsule of the same release, kept; anything else a conflict unless
//!    `--on-conflict overwrite`.
//! 5. The writes ([`tagging`]): the image (blobs, child manifests, the tag),
//!    then the capsule (blobs, then the tag). Each tag is claimed by the race
//!    protocol of spec section 7, and every write is preceded by a check of
//!    the cancellation token, so SIGINT/SIGTERM stop a run between writes and
//!    never leave a tag naming blobs that are missing.

mod claim;
mod created;
mod image;
mod immutability;
mod tagging;
mod timing;

use std::sync::Mutex;

use serde::Serialize;

pub use self::created::{BoxFuture, CommitDateSource};
use self::immutability::{CapsuleAction, Existing};
pub use self::tagging::{settle_delay, PARALLEL_UPLOADS, SETTLE_MIN};
use self::tagging::{Claim, TagWrite};
use crate::cancel::Cancel;
use crate::cli::PublishArgs;
use crate::commands::build;
use crate::core::capsule::{self, Built};
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::{EMPTY_CONFIG, MANIFEST_MEDIA_TYPE};
use crate::core::package::{Diagnostic, Package};
use crate::core::release::{self, ReleaseDoc};
use crate::core::tag::Tag;
use crate::core::timestamp::Created;
use crate::failure::{Classify, Failure, FailureKind};
use crate::image_layout::BlobLocation;
use crate::layout;
use crate::registry::{ClientOptions, OciRegistry, RegistryClient};
use crate::report::{self, CapsuleReport};
use crate::settings::{Env, PublishSettings};
use crate::tree::LocalFiles;

/// What a publish did, for the CLI's output and the action's outputs,
/// check run and summary.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub report: CapsuleReport,
    /// This run's `PUT` made the capsule tag name this capsule (spec section
    /// 7; see [`claim`]): false when the tag already named this release, when
    /// another run published it at the same time, and on a dry run.
    pub published: bool,
    /// The same for the image tag, when this run pushed the image from
    /// `--image-layout`.
    pub image_pushed: bool,
    pub dry_run: bool,
    /// The image tag does not exist and the settings allowed that (a pull
    /// request that only validates): the package was checked, but the report
    /// has no capsule, image or layer digests.
    pub image_missing: bool,
    /// Package warnings, for annotations.
    pub warnings: Vec<Diagnostic>,
    /// A sentence for logs and the check run ("pushed …", "already published …").
    pub message: String,
    /// HTTP requests made to registries (retries and token requests included).
    pub http_requests: u64,
    /// What signing did, when a key was given (spec section 9).
    pub signature: Option<crate::sign::Signed>,
}

/// The whole publish flow against the real registry.
pub async fn publish(s: &PublishSettings, commit_dates: Option<&dyn CommitDateSource>, cancel: &Cancel) -> Result<PublishOutcome, Failure> {
    let client = OciRegistry::new(&s.credentials, ClientOptions { push: !s.dry_run, ..ClientOptions::default() }).map_err(Failure::from)?;
    let result = publish_with(&client, s, commit_dates, cancel).await;
    debug(&format!("{} HTTP requests to registries", client.requests()));
    let mut outcome = result?;
    outcome.http_requests = client.requests();
    Ok(outcome)
}

pub fn run(args: &PublishArgs, env: Env) -> Result<(), Failure> {
    let s = PublishSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    // The CLI's fallback date is --created / SOURCE_DATE_EPOCH, already in the settings.
    let outcome = super::block_on(async { publish(&s, None, &Cancel::on_signals()).await })?;
    if s.capsule.json {
        report::print_json(&PublishJson {
            report: &outcome.report,
            published: outcome.published,
            image_pushed: outcome.image_pushed,
            dry_run: outcome.dry_run,
            message: &outcome.message,
            http_requests: outcome.http_requests,
            signature: outcome.signature.as_ref().map(|sig| match sig {
                crate::sign::Signed::AlreadySigned { tag } => SignatureJson { tag, pushed: false },
                crate::sign::Signed::Pushed { tag, .. } => SignatureJson { tag, pushed: true },
            }),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<SignatureJson<'a>>,
}

#[derive(Serialize)]
struct SignatureJson<'a> {
    tag: &'a str,
    pushed: bool,
}

/// The flow of the module docs, against any registry client.
pub async fn publish_with<R: RegistryClient>(
    registry: &R,
    s: &PublishSettings,
    commit_dates: Option<&dyn CommitDateSource>,
    cancel: &Cancel,
) -> Result<PublishOutcome, Failure> {
    let c = &s.capsule;
    let tag = Tag::from(&c.sha);
    // Local input first: a chart problem is reported even when the image is not
    // in the registry yet (a pull request that only annotates).
    let package = build::scan_package(c)?;
    // The capsule tag does not depend on the image: resolve both at once.
    let started = std::time::Instant::now();
    let image = async {
        let image = match &s.image_layout {
            Some(path) => image::inspect_image_layout(registry, s, path, &tag).await.map(Some),
            None => image::resolve_image(registry, s, &tag).await,
        };
        (image, started.elapsed())
    };
    let capsule_tag = async { (registry.resolve(&c.capsule, (&tag).into()).await, started.elapsed()) };
    let ((image, image_done), (existing, tag_done)) = futures_util::future::join(image, capsule_tag).await;
    let mut image = match image? {
        Some(image) => image,
        None if s.allow_missing_image => return package_only(s, package),
        None => return Err(image::missing_image(&c.image, &tag)),
    };
    timing::log("image date", timing::on_critical_path(image.date_lookup, image_done, tag_done));
    let existing = existing.map_err(Failure::from)?;
    let created = timing::mandated("image date", created::choose_created(s, &image, commit_dates)).await?;

    let (release, package, docs) = build::prepare(c, package, image.digest.clone(), created)?;
    let work = crate::scratch::WorkDir::new()?;
    let capsule_layout = work.path().join("capsule");
    let built = build::write_outputs(c, &capsule_layout, layout::Durability::Scratch, &release, &package, &docs)?;
    let ours = release::parse(&String::from_utf8_lossy(&docs.release_yaml)).or_fail(FailureKind::Failed)?;
    let action = immutability::capsule_action(registry, s, existing, &built, &ours, work.path()).await?;

    // Checked; now write. The image first: the capsule names it.
    let image_needs_push = image.to_push.is_some();
    let image_pushed = match image.to_push.take() {
        Some(push) if !s.dry_run => image::push_layout(registry, &c.image, &c.capsule, &tag, push, cancel).await?,
        _ => false,
    };
    let mut report = CapsuleReport::new(&release, &package, &built);
    let capsule_ref = c.capsule.with_tag(&tag);
    let (publish_verb, overwrite_verb, push_verb) =
        if s.dry_run { ("would publish", "would overwrite", "would push") } else { ("published", "overwrote", "pushed") };
    let previous = match &action {
        CapsuleAction::Push => Some(None),
        CapsuleAction::Overwrite { digest } => Some(Some(digest)),
        CapsuleAction::Unchanged | CapsuleAction::KeepSameRelease(_) => None,
    };
    let (mut published, mut raced) = (false, None);
    if let (Some(previous), false) = (previous, s.dry_run) {
        let capsule = CapsuleWrite { dir: &capsule_layout, built: &built, ours: &ours, previous, work: work.path() };
        (published, raced) = push_capsule(registry, &c.capsule, &tag, &capsule, cancel).await?;
    }
    let mut message = match (&action, &raced) {
        (CapsuleAction::Push | CapsuleAction::Overwrite { .. }, None) if !published && !s.dry_run => format!(
            "already published: {capsule_ref} is {}, this very capsule, which another run pushed at the same time; that run \
             counts as its publisher (published=false)",
            built.digest
        ),
        (_, Some(other)) => {
            immutability::describe_existing(&mut report, &c.capsule, other);
            format!(
                "already published: while this run pushed {}, another run tagged {capsule_ref} as {}, a capsule of the same release; \
                 keeping that one",
                built.digest, other.digest
            )
        }
        (CapsuleAction::Push, None) => format!("{publish_verb} {capsule_ref} ({})", built.digest),
        (CapsuleAction::Unchanged, None) => format!("already published: {capsule_ref} is {}; nothing to push", built.digest),
        (CapsuleAction::KeepSameRelease(kept), None) => {
            immutability::describe_existing(&mut report, &c.capsule, kept);
            format!(
                "already published: {capsule_ref} is {}, a capsule of the same release (same commit, image and package digests) \
                 where this run built {}; keeping the published one",
                kept.digest, built.digest
            )
        }
        (CapsuleAction::Overwrite { digest }, None) => {
            format!("{overwrite_verb} {capsule_ref}: it named {digest}, a different release; now {}", built.digest)
        }
    };
    if image_needs_push {
        message = format!("{push_verb} image {}:{tag} ({}); {message}", c.image, image.digest);
    }
    // Sign what the tag names when that is this run's capsule; a capsule of the
    // same release that another run published is its publisher's to sign.
    let ours_is_tagged = raced.is_none() && !matches!(action, CapsuleAction::KeepSameRelease(_));
    let signature = match (&s.signing_key, s.dry_run, ours_is_tagged) {
        (Some(key), false, true) => {
            let signed = crate::sign::sign(registry, &c.capsule, &built.digest, key, cancel).await?;
            message = match &signed {
                crate::sign::Signed::AlreadySigned { tag } => format!("{message}; already signed by this key ({tag})"),
                crate::sign::Signed::Pushed { tag, .. } => format!("{message}; signed ({tag})"),
            };
            Some(signed)
        }
        (Some(_), false, false) => {
            message = format!("{message}; not signed: the tag names a capsule this run did not build");
            None
        }
        _ => None,
    };
    if s.dry_run {
        message = format!("dry run, nothing pushed: {message}");
    }
    Ok(PublishOutcome {
        report,
        published,
        image_pushed,
        dry_run: s.dry_run,
        image_missing: false,
        warnings: package.warnings,
        message,
        http_requests: 0,
        signature,
    })
}

/// The capsule to push, and what the run decided from.
struct CapsuleWrite<'a> {
    dir: &'a std::path::Path,
    built: &'a Built,
    ours: &'a ReleaseDoc,
    /// What the tag named when the run decided (absent, or what it overwrites).
    previous: Option<&'a Digest>,
    work: &'a std::path::Path,
}

/// Uploads the capsule's blobs (skipping those present), then claims the tag.
/// Whether this run's `PUT` made the tag name the capsule (`published`), and
/// the capsule of the same release another run tagged instead, if one did.
async fn push_capsule<R: RegistryClient>(
    registry: &R,
    repo: &Repository,
    tag: &Tag,
    w: &CapsuleWrite<'_>,
    cancel: &Cancel,
) -> Result<(bool, Option<Existing>), Failure> {
    let config = Digest::of(EMPTY_CONFIG);
    let (dir, built) = (w.dir, w.built);
    let blob = |digest: &Digest, size: u64| (digest.clone(), BlobLocation { file: layout::blob_path(dir, digest), offset: 0, size });
    let mut blobs = vec![blob(&config, EMPTY_CONFIG.len() as u64), blob(&built.layer.digest, built.layer.size)];
    blobs.extend(built.chart_layer.as_ref().map(|chart| blob(&chart.digest, chart.size)));
    cancel
        .guard("uploading the capsule's blobs", async { tagging::push_blobs(registry, repo, blobs).await.map_err(Failure::from) })
        .await?;
    // The layout is pushed: free it while the tag is claimed, which spends
    // most of its time in the settle delay. What is left, the scratch
    // directory's drop removes.
    let freed = tokio::task::spawn_blocking({
        let dir = dir.to_owned();
        move || std::fs::remove_dir_all(dir)
    });
    let write = TagWrite {
        repo,
        tag,
        register: repo,
        media_type: MANIFEST_MEDIA_TYPE,
        bytes: &built.manifest_bytes,
        digest: &built.digest,
        previous: w.previous,
        what: "capsule",
    };
    // Another digest under the tag is fine when it is a capsule of the same release.
    let same_release = Mutex::new(None);
    let accept = |other: Digest| {
        let same_release = &same_release;
        async move {
            let existing = immutability::existing_release(registry, repo, &other, w.work).await?;
            let same = existing.as_ref().is_some_and(|e| e.theirs.same_release_as(w.ours));
            if same {
                *same_release.lock().unwrap_or_else(|e| e.into_inner()) = existing;
            }
            Ok(same)
        }
    };
    let claim = tagging::claim_tag(registry, &write, cancel, accept).await;
    let _ = freed.await;
    match claim? {
        Claim::Made => Ok((true, None)),
        Claim::Found => Ok((false, None)),
        Claim::Other(_) => Ok((false, same_release.into_inner().unwrap_or_else(|e| e.into_inner()))),
    }
}

/// A pull request whose image was never pushed: the package is checked as
/// far as it can be without the image (the capsule is assembled around a
/// stand-in digest and date, and thrown away), and nothing else is claimed.
fn package_only(s: &PublishSettings, package: Package) -> Result<PublishOutcome, Failure> {
    let c = &s.capsule;
    let tag = c.sha.tag();
    let stand_in_date = c.created.map_or_else(|| Created::from_unix(946_684_800, "a stand-in date"), Ok).or_fail(FailureKind::Failed)?;
    let (release, package, docs) = build::prepare(c, package, Digest::of(b"no image yet"), stand_in_date)?;
    let (built, _, _) = capsule::write(&release, &package, &docs, std::io::sink(), c.helm_layer.then(std::io::sink), &LocalFiles)
        .or_fail(FailureKind::Input)?;
    let mut report = CapsuleReport::new(&release, &package, &built);
    for field in [&mut report.digest, &mut report.reference, &mut report.image_digest, &mut report.layer_digest, &mut report.created] {
        field.clear();
    }
    report.layer_size = 0;
    (report.chart_layer_digest, report.chart_layer_size) = (None, None);
    let message = format!(
        "image {}:{tag} is not in the registry, so no capsule digest can be computed; the package was validated ({} files, {})",
        c.image, report.file_count, report.package_digest
    );
    eprintln!("{message}");
    Ok(PublishOutcome {
        report,
        published: false,
        image_pushed: false,
        dry_run: true,
        image_missing: true,
        warnings: package.warnings,
        message,
        http_requests: 0,
        signature: None,
    })
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
