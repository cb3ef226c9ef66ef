//! `release-capsule preview`: the pull-request preview of the action, run
//! locally: the change's package rendered for each environment of the
//! configuration, compared with the base capsule and with what runs now.
//! Prints the report (Markdown, or `--json`); the complete diff goes to
//! `--output`, one file per environment.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use crate::cli::PreviewArgs;
use crate::core::ident::{Digest, GitSha, Repository};
use crate::core::package::PackageKind;
use crate::failure::{Classify, Failure, FailureKind};
use crate::github::client::{Notify, OctocrabGitHub};
use crate::github::Token;
use crate::gitops::target::RepoName;
use crate::preview::compare::{ChangeKind, Comparison};
use crate::preview::render::find_program;
use crate::preview::{config, report, PreviewReport, PreviewSettings, Tools};
use crate::registry::RegistryClient;
use crate::settings::{Env, RegistryCredentials};

fn input(e: impl Into<anyhow::Error>, flag: &str) -> Failure {
    Failure::input(e.into().context(flag.to_owned()))
}

fn tools(args: &PreviewArgs, env: Env, kind: PackageKind) -> Result<Tools, Failure> {
    let hint = "pass --helm PATH / --kustomize PATH, set RELEASE_CAPSULE_HELM / RELEASE_CAPSULE_KUSTOMIZE, or put it on PATH";
    let find = |tool, explicit: Option<&Path>, var| find_program(tool, explicit, env(var), env("PATH"), hint).map_err(Failure::input);
    Ok(match kind {
        PackageKind::Helm => Tools { helm: Some(find("helm", args.helm.as_deref(), "RELEASE_CAPSULE_HELM")?), kustomize: None },
        PackageKind::Kustomize => {
            Tools { helm: None, kustomize: Some(find("kustomize", args.kustomize.as_deref(), "RELEASE_CAPSULE_KUSTOMIZE")?) }
        }
    })
}

/// The settings, and the app repository and the tokens to read with.
fn resolve(args: &PreviewArgs, env: Env) -> Result<(PreviewSettings, RepoName, Option<Token>, Option<Token>), Failure> {
    let config = config::load(&args.config, &args.config.display().to_string()).map_err(Failure::input)?;
    let kind: PackageKind = args.package_kind.parse().map_err(|e| input(e, "--package-kind"))?;
    let head: GitSha = args.sha.trim().parse().map_err(|e| input(e, "--sha"))?;
    let image: Repository = args.image.trim().parse().map_err(|e| input(e, "--image"))?;
    let capsule = match &args.capsule_repository {
        Some(c) => c.trim().parse().map_err(|e| input(e, "--capsule-repository"))?,
        None => Repository::default_capsule_for(&image),
    };
    // Without --image-digest, `run` looks the digest up: by tag only when the
    // image is not there.
    let image_ref = match &args.image_digest {
        Some(d) => image.with_digest(&d.trim().parse::<Digest>().map_err(|e| input(e, "--image-digest"))?),
        None => image.with_tag(&head.tag()),
    };
    let repository = args.repository.clone().or_else(|| env("GITHUB_REPOSITORY")).ok_or_else(|| {
        Failure::input(anyhow!("--repository is required: the app repository on GitHub as owner/name (or set GITHUB_REPOSITORY)"))
    })?;
    let repository: RepoName = repository.parse().map_err(|e| input(e, "--repository"))?;
    let public_key = args
        .public_key
        .as_deref()
        .map(|p| crate::settings::public_key_file("--public-key", p))
        .transpose()
        .map_err(|e| Failure::new(FailureKind::Input, e))?;
    if args.base.trim().is_empty() {
        return Err(Failure::input(anyhow!("--base: give the branch, tag or commit the change merges into")));
    }
    let github_token = env("GITHUB_TOKEN").map(Token::new);
    let gitops_token = env("GITOPS_TOKEN").map(Token::new).or_else(|| github_token.clone());
    let settings = PreviewSettings {
        tools: tools(args, env, kind)?,
        package_repo_path: crate::settings::source_relative_path(&args.package_path),
        package_dir: args.package_path.clone(),
        kind,
        head,
        base: args.base.trim().to_owned(),
        image,
        image_ref,
        capsule,
        public_key,
        output_dir: args.output.clone(),
        timeout: Duration::from_secs(args.timeout_seconds.max(1)),
        config,
    };
    Ok((settings, repository, github_token, gitops_token))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CountsJson {
    added: usize,
    changed: usize,
    removed: usize,
    image_only: usize,
}

impl CountsJson {
    fn of(c: &Comparison) -> Self {
        Self {
            added: c.count(ChangeKind::Added),
            changed: c.count(ChangeKind::Changed),
            removed: c.count(ChangeKind::Removed),
            image_only: c.image_only.len(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentJson<'a> {
    name: &'a str,
    this_change: Option<CountsJson>,
    against_now: Option<CountsJson>,
    notes: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewJson<'a> {
    changed: bool,
    image: &'a str,
    base_capsule: Option<&'a str>,
    environments: Vec<EnvironmentJson<'a>>,
    files: Vec<String>,
}

fn print(r: &PreviewReport, output: &Path, json: bool) {
    if json {
        let base = match &r.baseline {
            crate::preview::baseline::Found::Capsule(b) => Some(b.capsule.as_str()),
            crate::preview::baseline::Found::Nothing { .. } => None,
        };
        crate::report::print_json(&PreviewJson {
            changed: r.changed(),
            image: &r.image_ref,
            base_capsule: base,
            environments: r
                .environments
                .iter()
                .map(|e| EnvironmentJson {
                    name: &e.name,
                    this_change: e.this_change.as_ref().map(CountsJson::of),
                    against_now: e.against_now.as_ref().map(CountsJson::of),
                    notes: &e.notes,
                })
                .collect(),
            files: r.files.iter().map(|f| f.display().to_string()).collect(),
        });
    } else {
        let shown = output.display().to_string();
        let (summary, text) = report::check_output(r, "", &shown);
        println!("{summary}");
        if let Some(text) = text {
            println!("{text}");
        }
    }
}

pub fn run(args: &PreviewArgs, env: Env) -> Result<(), Failure> {
    let (mut settings, repository, github_token, gitops_token) = resolve(args, env)?;
    let api_url = crate::github::api_url(env("GITHUB_API_URL").as_deref()).map_err(|m| Failure::input(anyhow!("GITHUB_API_URL: {m}")))?;
    let credentials = RegistryCredentials::resolve(&args.auth, env, &settings.capsule).or_fail(FailureKind::Input)?;
    let report = super::block_on(async {
        let notify: Notify = std::sync::Arc::new(|debug_only, line| {
            if !debug_only {
                eprintln!("{line}");
            }
        });
        let client = |token: Option<&Token>, repo: &RepoName| {
            OctocrabGitHub::new(&api_url, token, &repo.owner, &repo.name, notify.clone())
                .map_err(|e| Failure::failed(anyhow::Error::new(e).context("the GitHub client")))
        };
        let history = client(github_token.as_ref(), &repository)?;
        let gitops = client(gitops_token.as_ref(), &settings.config.gitops.repository)?;
        let registry = super::pull::connect(&credentials)?;
        if args.image_digest.is_none() {
            // As the action names it (spec section 13): `<image>@<digest>` when the
            // pull request's image exists, else `<image>:git-<sha>`.
            let tag = crate::core::tag::Tag::from(&settings.head);
            if let Some(digest) = registry.resolve(&settings.image, (&tag).into()).await.map_err(Failure::from)? {
                settings.image_ref = settings.image.with_digest(&digest);
            }
        }
        let work = crate::scratch::WorkDir::new()?;
        crate::preview::run(&settings, &history, &gitops, &registry, work.path()).await
    })?;
    print(&report, &args.output, args.json);
    Ok(())
}
