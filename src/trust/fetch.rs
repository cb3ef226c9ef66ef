//! Steps 1 to 3 of the trust chain: the manifest by digest, each layer hashed
//! as it lands on disk and unpacked safely, and layer 1 (the Helm chart, when
//! present) compared file by file with layer 0's `package/helm/`. Shared by
//! `verify`, `pull` and the verifier service.

use std::fs;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::anyhow;

use super::{blocking, Fetched, Unpacked};
use crate::core::ident::{Digest, Repository};
use crate::core::manifest::ANN_TITLE;
use crate::core::reference::Reference;
use crate::core::unpack::{UnpackError, UnpackedFile};
use crate::core::verify::{self, ChartLayerFiles, Checks};
use crate::failure::Failure;
use crate::registry::{RegistryClient, RegistryError};
use crate::tree::unpack;

/// Steps 1 to 3: fetch `capsule` by digest, download and hash its layers into
/// `work`, and unpack layer 0 into `tree` (which must not exist yet, or be
/// empty). A failed check ends the fetch with `unpacked: None`; `Err` is for
/// what keeps the checks from running at all (network, local I/O).
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
        (None, Some(tag)) => match client.resolve(repo, tag.into()).await.map_err(Failure::from)? {
            Some(digest) => digest,
            None => {
                checks.that("capsule", false, format_args!("{capsule} in the registry"), "no such tag");
                return Ok(out);
            }
        },
        (None, None) => return Err(Failure::input(anyhow!("{capsule}: give a tag or a digest"))),
    };
    out.digest = Some(digest.clone());
    let fetched = match client.manifest(repo, (&digest).into()).await {
        Ok(Some(fetched)) => fetched,
        Ok(None) => {
            checks.that("capsule", false, format_args!("{} in the registry", repo.with_digest(&digest)), "no such manifest");
            out.unavailable = true;
            return Ok(out);
        }
        Err(RegistryError::Integrity { message, .. }) => {
            checks.that("manifest.digest", false, &digest, message);
            out.unavailable = true;
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
        out.unavailable = true;
        return Ok(out);
    }

    // Step 2. The client hashes while it writes and reports what it wrote; the
    // check against the descriptor is made here, not left to the client.
    let layer_file = work.join("layer.tar.gz");
    let Some((layer_digest, layer_size)) =
        download(client, repo, &manifest.layer_digest, manifest.layer_size, &layer_file, "layer", checks).await?
    else {
        out.unavailable = true;
        return Ok(out);
    };
    if !verify::check_layer(checks, &manifest, &layer_digest, layer_size) {
        return Ok(out);
    }
    // Step 3. Only now, with the digest matched, is the archive opened.
    let Some(files) = unpack_checked(&layer_file, tree, "layer archive", checks).await? else { return Ok(out) };

    // Layer 1 goes through steps 2 and 3 as well, then must hold exactly package/helm/.
    let chart = match &manifest.chart_layer {
        None => None,
        Some((chart_digest, chart_size)) => {
            let chart_file = work.join("chart.tar.gz");
            let Some((digest, size)) = download(client, repo, chart_digest, *chart_size, &chart_file, "chart layer", checks).await? else {
                out.unavailable = true;
                return Ok(out);
            };
            if !verify::check_chart_layer(checks, (chart_digest, *chart_size), &digest, size) {
                return Ok(out);
            }
            let Some(chart_files) = unpack_checked(&chart_file, &work.join("chart"), "chart layer archive", checks).await? else {
                return Ok(out);
            };
            let title = manifest.manifest.layers.get(1).and_then(|l| l.annotations.get(ANN_TITLE)).cloned();
            let chart = ChartLayerFiles { files: chart_files, title };
            if !verify::check_chart_files(checks, &files, &chart) {
                return Ok(out);
            }
            Some(chart)
        }
    };
    out.unpacked = Some(Unpacked { manifest, files, chart });
    Ok(out)
}

/// Downloads one layer blob into `dest`; `None` after a failed check (`what`
/// names it: "layer", "chart layer").
async fn download<C: RegistryClient>(
    client: &C,
    repo: &Repository,
    digest: &Digest,
    size: u64,
    dest: &Path,
    what: &str,
    checks: &mut Checks,
) -> Result<Option<(Digest, u64)>, Failure> {
    match client.blob_to_file(repo, digest, size, dest).await {
        Ok(written) => Ok(Some(written)),
        Err(RegistryError::Integrity { message, .. }) => {
            checks.that(&format!("{what}.digest"), false, digest, message);
            Ok(None)
        }
        Err(RegistryError::Protocol { status: 404, .. }) => {
            checks.that(what, false, format_args!("blob {digest} in the registry"), "blob unknown");
            Ok(None)
        }
        Err(e) => Err(Failure::from(e)),
    }
}

/// Unpacks a downloaded layer by the rules of spec section 2; `None` after a
/// failed check named `what`.
pub(super) async fn unpack_checked(
    archive: &Path,
    target: &Path,
    what: &str,
    checks: &mut Checks,
) -> Result<Option<Vec<UnpackedFile>>, Failure> {
    let unreadable = {
        let path = archive.display().to_string();
        move |e: io::Error| Failure::failed(anyhow::Error::new(e).context(format!("{path}: cannot be read")))
    };
    let (source, dest) = (archive.to_owned(), target.to_owned());
    // Dropping this future (a request that timed out) stops the unpack at its next read.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let stopped = Arc::clone(&stop.0);
    let unpacked = blocking(move || -> Result<Result<Vec<UnpackedFile>, UnpackError>, io::Error> {
        let layer = fs::File::open(&source)?;
        Ok(unpack::unpack_until(BufReader::new(layer), &dest, &stopped))
    })
    .await?
    .map_err(&unreadable)?;
    let expected = "an archive spec section 2 allows";
    match unpacked {
        Ok(files) => {
            checks.that(what, true, expected, format_args!("{} files", files.len()));
            Ok(Some(files))
        }
        Err(
            e @ (UnpackError::Write { .. } | UnpackError::OutputNotEmpty { .. } | UnpackError::OutputIsLink { .. } | UnpackError::Stopped),
        ) => Err(Failure::failed(e)),
        Err(e) => {
            checks.that(what, false, expected, format_args!("{:#}", anyhow::Error::new(e)));
            Ok(None)
        }
    }
}

/// Sets its flag when dropped: the blocking work watching it stops.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
