//! `release-capsule export-freight`: a published capsule's release as Git
//! freight (spec section 11). The capsule is fetched and verified first, so
//! the freight's files are the very bytes of its `package/<kind>/` and its
//! facts those of its release.yaml: the freight and the capsule always agree.

use anyhow::{anyhow, Context};

use super::settings::{target, GitOpsTarget};
use crate::cancel::Cancel;
use crate::cli::{ExportFreightArgs, OnConflict};
use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::package::PackageKind;
use crate::core::reference::Reference;
use crate::core::release::ReleaseDoc;
use crate::failure::{Classify, Failure, FailureKind};
use crate::gitops::freight::{FreightExport, FreightRelease};
use crate::gitops::records::FreightFacts;
use crate::gitops::target::RepoPath;
use crate::gitops::Record;
use crate::registry::RegistryClient;
use crate::settings::{public_key_file, Env, RegistryCredentials};
use crate::sign::keys::PublicKey;
use crate::trust;

#[derive(Debug)]
pub struct ExportSettings {
    pub capsule: Reference,
    pub dir: RepoPath,
    pub overwrite: bool,
    pub force_current: bool,
    pub public_key: Option<PublicKey>,
    pub credentials: RegistryCredentials,
    pub target: GitOpsTarget,
    pub json: bool,
}

impl ExportSettings {
    pub fn resolve(args: &ExportFreightArgs, env: Env) -> Result<Self, anyhow::Error> {
        let capsule: Reference = args.capsule.trim().parse().context("--capsule")?;
        let credentials = RegistryCredentials::resolve(&args.auth, env, &capsule.repo)?;
        Ok(Self {
            capsule,
            dir: target("--freight-path", &args.freight_path)?,
            overwrite: args.on_conflict == OnConflict::Overwrite,
            force_current: args.force_current,
            public_key: args.public_key.as_deref().map(|p| public_key_file("--public-key", p)).transpose()?,
            credentials,
            target: GitOpsTarget::resolve(&args.gitops, env)?,
            json: args.gitops.json,
        })
    }
}

/// The release `capsule` holds, as freight, once the capsule verified against
/// the image its release.yaml names (and `public_key`, when given).
pub async fn freight_from_capsule<C: RegistryClient>(
    client: &C,
    capsule: &Reference,
    public_key: Option<&PublicKey>,
) -> Result<FreightRelease, Failure> {
    let work = crate::scratch::WorkDir::new()?;
    let tree = work.path().join("tree");
    let (verdict, files) = trust::verify_as_named(client, capsule, public_key, &tree, work.path()).await?;
    let (Some(doc), Some(digest), true) = (&verdict.release, &verdict.digest, verdict.verified()) else {
        let shown = verdict.digest.as_ref().map_or_else(|| capsule.to_string(), |d| capsule.repo.with_digest(d));
        return Err(Failure::failed(trust::failed_checks(&shown, &verdict.checks).context("nothing was exported")));
    };
    let facts = facts(doc, &capsule.repo, digest).map_err(Failure::failed)?;
    let prefix = format!("{}/", facts.package_kind.capsule_path());
    let mut package = Vec::new();
    for f in files.iter().filter(|f| f.path.starts_with(&prefix)) {
        let bytes =
            std::fs::read(tree.join(&f.path)).with_context(|| format!("{}: cannot be read back", f.path)).or_fail(FailureKind::Failed)?;
        package.push((f.path[prefix.len()..].to_owned(), bytes));
    }
    Ok(FreightRelease::new(facts, package))
}

/// The freight facts of a verified release.yaml.
fn facts(doc: &ReleaseDoc, capsule: &Repository, digest: &Digest) -> anyhow::Result<FreightFacts> {
    let field = |name: &str, v: Option<&String>| v.cloned().ok_or_else(|| anyhow!("release.yaml: {name} is missing"));
    Ok(FreightFacts {
        revision: field("gitCommit", doc.git_commit.as_ref())?.parse::<GitSha>()?,
        image: field("image.repoURL", doc.image.repo_url.as_ref())?.parse()?,
        image_digest: field("image.digest", doc.image.digest.as_ref())?.parse()?,
        package_kind: field("package.kind", doc.package.kind.as_ref())?.parse::<PackageKind>()?,
        package_digest: field("package.digest", doc.package.digest.as_ref())?.parse()?,
        capsule: Some((capsule.clone(), digest.clone())),
        created: field("created", doc.created.as_ref())?.parse()?,
    })
}

pub async fn execute<C: RegistryClient>(s: &ExportSettings, client: &C, cancel: &Cancel) -> Result<(), Failure> {
    let verifying = format!("verifying {} (nothing was committed)", s.capsule);
    let release = cancel.guard(&verifying, freight_from_capsule(client, &s.capsule, s.public_key.as_ref())).await?;
    let export = FreightExport { dir: s.dir.clone(), release, overwrite: s.overwrite, force_current: s.force_current };
    let written = super::write(&s.target, &[Record::Freight(export)], super::stderr_notify(), cancel).await?;
    super::print(&written, s.json);
    Ok(())
}

pub fn run(args: &ExportFreightArgs, env: Env) -> Result<(), Failure> {
    let s = ExportSettings::resolve(args, env).or_fail(FailureKind::Input)?;
    let s = &s;
    crate::commands::block_on_with_signals(|cancel| async move {
        let client = crate::commands::pull::connect(&s.credentials)?;
        execute(s, &client, &cancel).await
    })
}
