//! The pull-request preview (spec section 13): the pull request's package
//! rendered for each environment, as the stage renders it at promotion, and
//! compared (1) with the same environment rendered from the base capsule
//! (the merge base's, verified) and (2) with what the environment runs now
//! (the files its stage rendered on its branch). It writes nothing anywhere
//! but its own report: no push, no commit.
//!
//! The flow, [`run`], reads through small traits ([`History`], [`RepoFiles`],
//! [`RegistryClient`]); its pure parts are the modules: the configuration,
//! the values merge, rendering, objects, comparison, masking and the report.

pub mod baseline;
pub mod compare;
pub mod config;
pub mod diff_files;
pub mod objects;
pub mod render;
pub mod report;
pub mod secrets;
pub mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use futures_util::{StreamExt, TryStreamExt};

use self::baseline::{Found, Search};
use self::compare::{compare, Comparison, ImageRef};
use self::config::{Environment, PreviewConfig};
use self::objects::Objects;
use self::render::{HelmTemplate, RenderError};
use self::secrets::Scrubber;
use crate::core::ident::{GitSha, Repository};
use crate::core::package::PackageKind;
use crate::failure::{Failure, FailureKind};
use crate::github::reads::{History, RepoFiles};
use crate::github::GitHubError;
use crate::registry::RegistryClient;
use crate::sign::keys::PublicKey;

/// A GitHub failure as the step's exit code sees it: a token that may not
/// read is the user's to fix; anything else is the network's.
pub fn github_failure(e: GitHubError) -> Failure {
    let kind = if e.is_forbidden() { FailureKind::Input } else { FailureKind::Network };
    Failure::new(kind, e)
}

/// The programs that render.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub helm: Option<PathBuf>,
    pub kustomize: Option<PathBuf>,
}

/// Everything the preview needs, resolved.
#[derive(Debug, Clone)]
pub struct PreviewSettings {
    pub config: PreviewConfig,
    pub kind: PackageKind,
    /// The pull request's package directory.
    pub package_dir: PathBuf,
    /// The same, relative to the repository root (annotations point there).
    pub package_repo_path: String,
    pub head: GitSha,
    /// The pull request's base commit (or ref), for its merge base.
    pub base: String,
    pub image: Repository,
    /// What `imageKey` is set to: `<image>@<digest>`, else `<image>:git-<sha>`.
    pub image_ref: String,
    pub capsule: Repository,
    pub public_key: Option<PublicKey>,
    pub tools: Tools,
    /// Where the complete diffs go (created, emptied of earlier `.diff` files).
    pub output_dir: PathBuf,
    pub timeout: Duration,
}

/// One environment's result.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentResult {
    pub name: String,
    /// Against the base capsule; `None` without one.
    pub this_change: Option<Comparison>,
    /// Against what runs now; `None` when `rendered` is not configured or not there.
    pub against_now: Option<Comparison>,
    /// `<branch>` `<path>` compared against, when configured.
    pub rendered: Option<(String, String)>,
    pub notes: Vec<String>,
}

/// The whole preview.
#[derive(Debug, Clone)]
pub struct PreviewReport {
    pub environments: Vec<EnvironmentResult>,
    pub baseline: Found,
    pub image_ref: String,
    pub scrubber: Scrubber,
    /// The files written, one per environment.
    pub files: Vec<PathBuf>,
}

impl PreviewReport {
    /// How many environments change, by either comparison.
    pub fn changing(&self) -> usize {
        self.environments.iter().filter(|e| [&e.this_change, &e.against_now].into_iter().flatten().any(|c| !c.is_empty())).count()
    }
    pub fn changed(&self) -> bool {
        self.changing() > 0
    }
}

/// Where a failed render of the pull request's chart points, for annotations.
pub fn template_error(f: &Failure) -> Option<(&RenderError, &render::TemplateLocation)> {
    f.error.chain().find_map(|e| e.downcast_ref::<RenderError>()).and_then(|e| match e {
        RenderError::Failed { location: Some(location), .. } => Some((e, location)),
        _ => None,
    })
}

/// Reads and merges an environment's values files, as its stage's yaml-merge step does.
async fn merged_values(gitops: &dyn RepoFiles, config: &PreviewConfig, env: &Environment) -> Result<String, Failure> {
    let mut files = Vec::new();
    for path in &env.values_files {
        let bytes = gitops.file(path.as_str(), &config.gitops.git_ref).await.map_err(github_failure)?.ok_or_else(|| {
            Failure::input(anyhow!(
                "environment {}: values file {} is not in {} at {}; check valuesFiles in the preview config (the stage's yaml-merge would fail too)",
                env.name,
                path,
                config.gitops.repository,
                config.gitops.git_ref
            ))
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Failure::input(anyhow!("environment {}: values file {path} is not UTF-8 text", env.name)))?;
        files.push((format!("{}:{path}", config.gitops.repository), text));
    }
    let merged = values::merge_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| Failure::input(anyhow::Error::new(e).context(format!("environment {}", env.name))))?;
    Ok(values::emit(merged.as_ref()))
}

/// Which side of a comparison a render is.
#[derive(Debug, Clone, Copy)]
enum Side {
    PullRequest,
    Base,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::PullRequest => "pr",
            Self::Base => "base",
        }
    }
}

/// Renders `package` for `env`, with the merged values in `values`.
async fn render_env(
    s: &PreviewSettings,
    env: &Environment,
    package: &Path,
    values: &Path,
    side: Side,
    home: &Path,
) -> Result<Objects, Failure> {
    let what = match side {
        Side::PullRequest => format!("for {} (this pull request)", env.name),
        Side::Base => format!("for {} (the base capsule)", env.name),
    };
    let hint =
        "pass --helm PATH (or --kustomize PATH), or set RELEASE_CAPSULE_HELM (RELEASE_CAPSULE_KUSTOMIZE); the action image ships both";
    let (tool, program, args) = match s.kind {
        PackageKind::Helm => {
            let program = s.tools.helm.clone().ok_or_else(|| Failure::input(RenderError::NotFound { tool: "helm", hint: hint.into() }))?;
            let t = HelmTemplate {
                release_name: env.release_name.clone(),
                chart: package.to_owned(),
                namespace: env.namespace.clone().unwrap_or_default(),
                values: values.to_owned(),
                set_literal: s.config.image_key.clone().map(|k| (k, s.image_ref.clone())),
            };
            ("helm", program, t.args())
        }
        PackageKind::Kustomize => {
            let program =
                s.tools.kustomize.clone().ok_or_else(|| Failure::input(RenderError::NotFound { tool: "kustomize", hint: hint.into() }))?;
            ("kustomize", program, render::kustomize_args(package))
        }
    };
    std::fs::create_dir_all(home)
        .map_err(|e| Failure::failed(anyhow::Error::new(e).context(format!("{}: cannot be created", home.display()))))?;
    let text = render::run(tool, &program, &args, home, s.timeout, &what).await.map_err(|e| match side {
        Side::PullRequest => Failure::failed(e),
        // The base's files are not the pull request's: no annotation points there.
        Side::Base => Failure::failed(anyhow!("{e}").context("the base capsule does not render")),
    })?;
    let mut objects = Objects::default();
    objects.add_documents(&text, &format!("{tool} {what}")).map_err(Failure::failed)?;
    Ok(objects)
}

/// The objects in the files a stage rendered on its branch.
async fn rendered_objects(gitops: &dyn RepoFiles, branch: &str, dir: &str) -> Result<Option<Objects>, Failure> {
    let Some(files) = gitops.files_under(branch, dir).await.map_err(github_failure)? else { return Ok(None) };
    let mut objects = Objects::default();
    for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".yaml") || p.ends_with(".yml")) {
        let shown = format!("{}:{branch}:{dir}/{path}", gitops.repository());
        let text = std::str::from_utf8(bytes).map_err(|_| Failure::failed(anyhow!("{shown}: is not UTF-8 text")))?;
        objects.add_documents(text, &shown).map_err(Failure::failed)?;
    }
    Ok(Some(objects))
}

/// `f` with every Secret value `scrubber` knows cut out of its text; a
/// render's error stays one, so that it is still annotated at its file.
fn scrubbed(f: Failure, scrubber: &Scrubber) -> Failure {
    let kind = f.kind;
    match f.error.downcast::<RenderError>() {
        Ok(e) => Failure::new(kind, e.scrubbed(|text| scrubber.scrub(text))),
        Err(other) => {
            let text = format!("{other:#}");
            let clean = scrubber.scrub(&text);
            if clean == text {
                Failure::new(kind, other)
            } else {
                Failure::new(kind, anyhow!(clean))
            }
        }
    }
}

pub(crate) fn io_failure(path: &Path, what: &str) -> impl Fn(std::io::Error) -> Failure {
    let shown = format!("{}: cannot {what}", path.display());
    move |e| Failure::failed(anyhow::Error::new(e).context(shown.clone()))
}

/// Runs the preview. `work` is private scratch space.
pub async fn run<C: RegistryClient>(
    s: &PreviewSettings,
    history: &dyn History,
    gitops: &dyn RepoFiles,
    registry: &C,
    work: &Path,
) -> Result<PreviewReport, Failure> {
    if s.kind == PackageKind::Kustomize {
        if let Some(env) = s.config.environments.iter().find(|e| !e.values_files.is_empty()) {
            return Err(Failure::input(anyhow!(
                "preview config: environment {}: valuesFiles: a kustomize package has no Helm values; leave valuesFiles out",
                env.name
            )));
        }
    }
    if s.kind == PackageKind::Helm {
        // Kargo renders into the Project's namespace when the step sets none,
        // and Helm into `default`: guessing either shows what no stage renders.
        if let Some((i, env)) = s.config.environments.iter().enumerate().find(|(_, e)| e.namespace.is_none()) {
            return Err(Failure::input(anyhow!(
                "preview config: environments[{i}].namespace: is required for a Helm package (environment {}): the stage's \
                 helm-template namespace, or, when the step sets none, the Kargo Project's namespace (the Stage's \
                 metadata.namespace, e.g. kargo-project-codeai), which Kargo renders into then",
                env.name
            )));
        }
    }
    // Values first: a missing file is the user's to fix, before anything is fetched.
    let values_dir = work.join("values");
    std::fs::create_dir_all(&values_dir).map_err(io_failure(&values_dir, "be created"))?;
    let merged: Vec<String> = futures_util::stream::iter(s.config.environments.iter().map(|env| merged_values(gitops, &s.config, env)))
        .buffered(4)
        .try_collect()
        .await?;
    let mut values_files = Vec::new();
    for (env, text) in s.config.environments.iter().zip(merged) {
        let path = values_dir.join(format!("{}.yaml", env.name));
        std::fs::write(&path, text).map_err(io_failure(&path, "be written"))?;
        values_files.push(path);
    }

    // Then three things at once, so that reading and verifying overlap the
    // renders: the pull request's renders; the base capsule, found and
    // verified, then its renders; what the stages rendered on their branches.
    // Renders run a few at a time, whichever side they are for.
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let slots = tokio::sync::Semaphore::new(parallel);
    let renders = |side: Side, package: PathBuf| {
        let (slots, values_files, package) = (&slots, &values_files, package);
        futures_util::future::try_join_all(s.config.environments.iter().enumerate().map(move |(i, env)| {
            let home = work.join(format!("home-{}-{i}", side.name()));
            let package = package.clone();
            async move {
                let _slot = slots.acquire().await.map_err(|e| Failure::failed(anyhow!("render slots: {e}")))?;
                render_env(s, env, &package, &values_files[i], side, &home).await
            }
        }))
    };
    let search =
        Search { capsule: &s.capsule, image: &s.image, public_key: s.public_key.as_ref(), base: &s.base, head: &s.head, kind: s.kind };
    let base_side = async {
        let found = baseline::find(history, registry, &search, work).await?;
        let objects = match &found {
            Found::Capsule(base) => Some(renders(Side::Base, base.package_dir.clone()).await?),
            Found::Nothing { .. } => None,
        };
        Ok::<_, Failure>((found, objects))
    };
    let now_side = futures_util::future::try_join_all(s.config.environments.iter().map(|env| async move {
        match &env.rendered {
            Some(r) => rendered_objects(gitops, r.branch.as_str(), r.path.as_str()).await,
            None => Ok(None),
        }
    }));
    // All three run to their end, even when one fails: a failure's text
    // (Helm's own message may quote a value) is scrubbed of the Secret values
    // that the renders which succeeded hold; and the pull request's own
    // failure, annotated at its file, is the one reported first.
    let (heads, base, nows) = futures_util::future::join3(renders(Side::PullRequest, s.package_dir.clone()), base_side, now_side).await;
    let mut scrubber = Scrubber::default();
    let base_objects = base.iter().flat_map(|(_, objects)| objects.iter().flatten());
    for objects in heads.iter().flatten().chain(base_objects).chain(nows.iter().flatten().flatten()) {
        scrubber.learn(objects);
    }
    let heads = heads.map_err(|f| scrubbed(f, &scrubber))?;
    let (found, bases) = base.map_err(|f| scrubbed(f, &scrubber))?;
    let nows = nows.map_err(|f| scrubbed(f, &scrubber))?;

    let image = ImageRef { repo: s.image.to_string(), reference: s.image_ref.clone() };
    let mut environments = Vec::new();
    for (i, (env, (head, now))) in s.config.environments.iter().zip(heads.into_iter().zip(nows)).enumerate() {
        let mut result = EnvironmentResult { name: env.name.clone(), ..EnvironmentResult::default() };
        if let Some(base) = bases.as_ref().map(|b| &b[i]) {
            result.this_change = Some(compare(base, &head, Some(&image)));
        }
        if let Some(r) = &env.rendered {
            result.rendered = Some((r.branch.to_string(), r.path.to_string()));
            match now {
                Some(now) => {
                    if now.skipped > 0 {
                        result
                            .notes
                            .push(format!("{} documents under {} that are not Kubernetes objects were left out", now.skipped, r.path));
                    }
                    result.against_now = Some(compare(&now, &head, Some(&image)));
                }
                None => result.notes.push(format!(
                    "{} has no {} on branch {}: nothing runs there yet to compare against",
                    gitops.repository(),
                    r.path,
                    r.branch
                )),
            }
        }
        environments.push(result);
    }
    let mut out = PreviewReport { environments, baseline: found, image_ref: s.image_ref.clone(), scrubber, files: Vec::new() };
    out.files = diff_files::write(&out, &s.output_dir)?;
    Ok(out)
}
