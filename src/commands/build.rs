//! `release-capsule build`: a capsule into a local OCI image layout, no network.

use std::fs::File;
use std::io::BufReader;

use crate::cli::BuildArgs;
use crate::core::capsule::{self, Built, Documents};
use crate::core::package::Package;
use crate::core::release::Release;
use crate::failure::{Classify, Failure, FailureKind};
use crate::layout::{self, Durability, LayoutError, Replaceable, Staged};
use crate::report::{self, CapsuleReport};
use crate::settings::{self, BuildSettings, CapsuleSettings, Env};
use crate::tree::unpack;

pub fn run(args: &BuildArgs, env: Env) -> Result<(), Failure> {
    let s = BuildSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    let package = scan_package(&s.capsule)?;
    let (release, package, docs) = prepare(&s.capsule, package, s.image_digest.clone(), s.created)?;
    let built = write_outputs(&s.capsule, &s.output, Durability::Synced, &release, &package, &docs)?;
    let report = CapsuleReport::new(&release, &package, &built);
    if s.capsule.json {
        report::print_json(&report);
    } else {
        println!("built {}", s.output.display());
        for line in report.lines() {
            println!("  {line}");
        }
        println!("  publish  skopeo copy oci:{}:{} docker://{}:{}", s.output.display(), report.tag, report.capsule_repository, report.tag);
    }
    Ok(())
}

/// Reads and checks the package: the first thing build and publish do, so a
/// package problem is reported (and annotated) before any registry is asked.
pub fn scan_package(s: &CapsuleSettings) -> Result<Package, Failure> {
    eprintln!("scanning {} package at {}", s.package_kind, s.package_path.display());
    let package = crate::tree::package::scan(&s.package_path, s.package_kind).or_fail(FailureKind::Input)?;
    for w in &package.warnings {
        eprintln!("warning: {}: {}", s.package_path.join(&w.file).display(), w.message);
    }
    eprintln!("  {} files, {}, package digest {}", package.file_count(), report::human_size(package.total_size), package.digest);
    Ok(package)
}

/// Derives everything the capsule holds from the scanned package. Shared by
/// build and publish, so both make the same bytes from the same inputs.
pub fn prepare(
    s: &CapsuleSettings,
    package: Package,
    image_digest: crate::core::ident::Digest,
    created: crate::core::timestamp::Created,
) -> Result<(Release, Package, Documents), Failure> {
    let release = Release {
        git_commit: s.sha.clone(),
        created,
        source: s.source.clone(),
        image: s.image.clone(),
        image_digest,
        capsule: s.capsule.clone(),
        package_kind: s.package_kind,
        package_digest: package.digest.clone(),
        chart: package.chart.clone(),
    };
    let user_sbom = settings::read_optional("--sbom", s.sbom.as_deref()).or_fail(FailureKind::Input)?;
    let user_provenance = settings::read_optional("--provenance", s.provenance.as_deref()).or_fail(FailureKind::Input)?;
    let docs = capsule::documents(&release, &package, &s.package_source_path, user_sbom, user_provenance).or_fail(FailureKind::Input)?;
    Ok((release, package, docs))
}

fn layout_failure(e: LayoutError) -> Failure {
    match e {
        LayoutError::Io { .. } => Failure::failed(e),
        LayoutError::Capsule(capsule::CapsuleError::Archive(_)) => Failure::failed(e),
        LayoutError::Occupied { .. } | LayoutError::Capsule(_) => Failure::input(e),
    }
}

/// Writes the layout (and the unpacked tree) into staging directories and
/// moves them into place only when both are complete.
pub fn write_outputs(
    s: &CapsuleSettings,
    out: &std::path::Path,
    durability: Durability,
    release: &Release,
    package: &Package,
    docs: &Documents,
) -> Result<Built, Failure> {
    if let Some(dir) = &s.unpacked {
        layout::check_output(dir, Replaceable::CapsuleTree).map_err(layout_failure)?;
    }
    let (staged, built) = layout::stage_capsule_layout(out, durability, release, package, docs, s.helm_layer).map_err(layout_failure)?;
    eprintln!("  layer {} ({})", built.layer.digest, report::human_size(built.layer.size));
    if let Some(chart) = &built.chart_layer {
        eprintln!("  chart layer {} ({})", chart.digest, report::human_size(chart.size));
    }
    let unpacked = s.unpacked.as_ref().map(|dir| unpack_into(&staged, &built, dir)).transpose()?;
    staged.commit(Replaceable::Layout).map_err(layout_failure)?;
    if let Some(u) = unpacked {
        u.commit(Replaceable::CapsuleTree).map_err(layout_failure)?;
    }
    Ok(built)
}

/// The unpacked tree comes from the layer itself, through the same safe
/// unpacker `pull` uses: what it shows is exactly what consumers get.
fn unpack_into(staged: &Staged, built: &Built, dir: &std::path::Path) -> Result<Staged, Failure> {
    let target = Staged::new(dir).map_err(layout_failure)?;
    let blob = layout::blob_path(&staged.dir, &built.layer.digest);
    let file =
        File::open(&blob).map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("{}: cannot be read", blob.display()))))?;
    unpack::unpack(BufReader::new(file), &target.dir).or_fail(FailureKind::Failed)?;
    Ok(target)
}
