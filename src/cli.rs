//! The command line, as parsed by clap: raw strings, checked later in `settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "release-capsule",
    version,
    about = "Build, publish and verify release capsules: one immutable OCI artifact per release, for Kargo promotions."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a capsule into a local OCI image layout (no registry needed).
    Build(BuildArgs),
    /// Build a capsule and push it (and optionally the image) to a registry.
    Publish(PublishArgs),
    /// Check that a published capsule is the real release of an image, then unpack it.
    Verify(VerifyArgs),
    /// Download a capsule, check its digest and unpack it safely.
    Pull(PullArgs),
    /// Run as the GitHub Action step (reads INPUT_* and GITHUB_* from the environment).
    Action,
    /// Serve the trust chain over HTTP for Kargo's `http` step (POST /verify).
    Serve(ServeArgs),
    /// Print the public key (cosign.pub) of a signing key, as `cosign public-key --key` does.
    PublicKey(PublicKeyArgs),
    /// Write a published capsule's release as Git freight (git-<sha>/ and current/) in one commit.
    ExportFreight(ExportFreightArgs),
    /// Write a legacy-gitflow gate record (merged/git-<sha>.yaml and current.yaml) in one commit.
    RecordGate(RecordGateArgs),
    /// Preview what a change does to each environment: render the package as the
    /// stages do and compare with the base capsule and with what runs now.
    Preview(PreviewArgs),
}

/// The pull-request preview, run locally. GITHUB_TOKEN reads the app
/// repository (its merge base), GITOPS_TOKEN (else GITHUB_TOKEN) the GitOps
/// repository; GITHUB_API_URL says where GitHub is.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The preview configuration (schemaVersion: release-capsule-preview/v1).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The chart (or kustomize) directory of the change.
    #[arg(long)]
    pub package_path: PathBuf,
    /// helm or kustomize.
    #[arg(long, default_value = "helm")]
    pub package_kind: String,
    /// The full 40-hex commit of the change (its image is <image>:git-<sha>).
    #[arg(long)]
    pub sha: String,
    /// The app image repository, without tag (e.g. ghcr.io/my-org/my-app).
    #[arg(long)]
    pub image: String,
    /// The digest of <image>:git-<sha>, which the renders set the image by, as the
    /// stage does; without it, it is looked up in the registry, and the image is
    /// set by tag only when <image>:git-<sha> is not there.
    #[arg(long)]
    pub image_digest: Option<String>,
    /// Where the capsules are [default: <image>-release-capsule].
    #[arg(long)]
    pub capsule_repository: Option<String>,
    /// The app repository on GitHub, owner/name [default: $GITHUB_REPOSITORY].
    #[arg(long)]
    pub repository: Option<String>,
    /// What the change will merge into (a branch, tag or commit): its merge base
    /// with --sha is the release compared against.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// The helm program [default: $RELEASE_CAPSULE_HELM, else helm on PATH].
    #[arg(long, value_name = "PATH")]
    pub helm: Option<PathBuf>,
    /// The kustomize program [default: $RELEASE_CAPSULE_KUSTOMIZE, else kustomize on PATH].
    #[arg(long, value_name = "PATH")]
    pub kustomize: Option<PathBuf>,
    /// Where the complete diff goes, one <environment>.diff per environment.
    #[arg(long, default_value = "./release-capsule-preview")]
    pub output: PathBuf,
    /// Also require the base capsule to carry a valid cosign signature by this key.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Seconds one render may take.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
    #[command(flatten)]
    pub auth: RegistryAuthArgs,
    /// Print one JSON object on stdout instead of the Markdown report.
    #[arg(long)]
    pub json: bool,
}

/// Where GitOps records go. The token comes from GITOPS_TOKEN, the API from
/// GITHUB_API_URL (default https://api.github.com).
#[derive(Debug, Args, Clone)]
pub struct GitOpsArgs {
    /// The GitOps repository, owner/name; GITOPS_TOKEN must hold Contents: read and write on it.
    #[arg(long)]
    pub gitops_repository: String,
    /// The branch the records are committed to.
    #[arg(long, default_value = "main")]
    pub gitops_branch: String,
    /// Commit author and committer, `Name <email>` [default: github-actions[bot]].
    #[arg(long)]
    pub commit_author: Option<String>,
    /// The workflow run to name in the commit message.
    #[arg(long)]
    pub run_url: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportFreightArgs {
    /// The published capsule: <repo>:git-<sha> or <repo>@<digest>. It is verified
    /// against the image its release.yaml names before anything is written.
    #[arg(long)]
    pub capsule: String,
    /// The freight directory in the GitOps repository (e.g. warehouses/my-app/freight).
    #[arg(long)]
    pub freight_path: String,
    /// What to do when git-<sha>/ already holds a different release.
    #[arg(long, value_enum, default_value_t = OnConflict::Fail)]
    pub on_conflict: OnConflict,
    /// Move current/ to this release even when it holds a newer one.
    #[arg(long)]
    pub force_current: bool,
    /// Also require a valid cosign signature by this public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub gitops: GitOpsArgs,
    #[command(flatten)]
    pub auth: RegistryAuthArgs,
}

#[derive(Debug, Args)]
pub struct RecordGateArgs {
    /// The full 40-hex commit that was pushed to the gate branch.
    #[arg(long)]
    pub sha: String,
    /// The gate branch it was pushed to (staging, test, levelbuilder, production...).
    #[arg(long)]
    pub branch: String,
    /// The gate directory in the GitOps repository (e.g. warehouses/my-app/legacy-gitflow).
    #[arg(long)]
    pub gate_path: String,
    /// When it was pushed, RFC 3339 [default: now]; give the push's own time, so that a re-run is a no-op.
    /// merged/ keeps the first record's; current.yaml takes it only when it is later than the push it names.
    #[arg(long)]
    pub merged_at: Option<String>,
    #[command(flatten)]
    pub gitops: GitOpsArgs,
}

#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// The cosign key (password in COSIGN_PASSWORD) or unencrypted PKCS#8 PEM.
    #[arg(long, value_name = "FILE")]
    pub signing_key: PathBuf,
}

/// What names the release and its package: shared by `build` and `publish`.
#[derive(Debug, Args, Clone, Default)]
pub struct CapsuleArgs {
    /// The full 40-hex commit the release is built from.
    #[arg(long)]
    pub sha: Option<String>,
    /// The app image repository, without tag (e.g. ghcr.io/my-org/my-app).
    #[arg(long)]
    pub image: Option<String>,
    /// The digest `<image>:git-<sha>` resolves to (index digest for multi-arch).
    #[arg(long)]
    pub image_digest: Option<String>,
    /// Where the capsule goes [default: <image>-release-capsule].
    #[arg(long)]
    pub capsule_repository: Option<String>,
    /// The source repository URL [default: $GITHUB_SERVER_URL/$GITHUB_REPOSITORY].
    #[arg(long)]
    pub source_repository: Option<String>,
    /// helm or kustomize.
    #[arg(long, default_value = "helm")]
    pub package_kind: String,
    /// The chart (or kustomize) directory.
    #[arg(long)]
    pub package_path: Option<PathBuf>,
    /// The release date, RFC 3339 [default: $SOURCE_DATE_EPOCH].
    #[arg(long)]
    pub created: Option<String>,
    /// Use this SBOM file instead of the generated SPDX document.
    #[arg(long)]
    pub sbom: Option<PathBuf>,
    /// Use this provenance file instead of the generated in-toto statement.
    #[arg(long)]
    pub provenance: Option<PathBuf>,
    /// Also write the unpacked capsule tree here.
    #[arg(long)]
    pub unpacked: Option<PathBuf>,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Leave out layer 1, the Helm chart as `helm package` lays it out (what
    /// Flux's HelmRelease loads); a Helm capsule has it by default.
    #[arg(long)]
    pub no_helm_layer: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub capsule: CapsuleArgs,
    /// The OCI image layout directory to write.
    #[arg(long, default_value = "./release-capsule-oci")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OnConflict {
    /// Refuse to replace a different release (a tag naming another capsule,
    /// or a git-<sha>/ folder holding other files), and exit 1.
    #[default]
    Fail,
    /// Replace it with this release.
    Overwrite,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub capsule: CapsuleArgs,
    #[command(flatten)]
    pub auth: RegistryAuthArgs,
    /// Push this OCI image layout (directory or tar) as <image>:git-<sha> first.
    #[arg(long)]
    pub image_layout: Option<PathBuf>,
    /// What to do when the capsule tag already names a different release (or,
    /// with --image-layout, the image tag names a different image).
    #[arg(long, value_enum, default_value_t = OnConflict::Fail)]
    pub on_conflict: OnConflict,
    /// Assemble, validate and resolve, but push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Sign the capsule with this cosign key (`cosign generate-key-pair`'s
    /// cosign.key, password in COSIGN_PASSWORD; or an unencrypted PKCS#8 PEM),
    /// as `cosign sign --key` would: a sha256-<digest>.sig manifest beside it.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RegistryAuthArgs {
    /// Registry user [env: REGISTRY_USERNAME].
    #[arg(long, allow_hyphen_values = true)]
    pub registry_username: Option<String>,
    /// Registry password or token [env: REGISTRY_PASSWORD]. A token may start with '-'.
    #[arg(long, allow_hyphen_values = true)]
    pub registry_password: Option<String>,
    /// The registry the login is for, e.g. ghcr.io (repeatable) [env:
    /// REGISTRY_LOGIN_HOST, comma-separated]. The login goes to these hosts
    /// and no other [default: the capsule repository's registry].
    #[arg(long, value_name = "HOST")]
    pub registry_login_host: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The capsule: <repo>:<tag> or <repo>@<digest>.
    #[arg(long)]
    pub capsule: String,
    /// The image it must belong to: <repo>:git-<sha>.
    #[arg(long)]
    pub image: String,
    /// The image digest expected (from Kargo Freight), checked as well.
    #[arg(long)]
    pub image_digest: Option<String>,
    /// Unpack the verified capsule here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also require a valid cosign signature by this public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub auth: RegistryAuthArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The capsule: <repo>:<tag> or <repo>@<digest>.
    #[arg(long)]
    pub capsule: String,
    /// Where to unpack it (must not exist or be empty).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub auth: RegistryAuthArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Repositories the service may contact: `host/path` exactly, or
    /// `host/path/*` for every repository under it. Repeatable; required.
    #[arg(long = "allow", value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// A Docker config.json with registry logins (a mounted
    /// kubernetes.io/dockerconfigjson Secret); anonymous without it.
    #[arg(long, value_name = "PATH")]
    pub registry_config: Option<PathBuf>,
    /// Verifications running at once (each may hold a 100 MiB layer on disk).
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 65_536)]
    pub max_body_bytes: usize,
    /// Time one request may take, in seconds (a timeout answers 503).
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
    /// Verified capsules remembered by digest (0: no cache).
    #[arg(long, default_value_t = 1024)]
    pub cache_entries: usize,
    /// At most this long from SIGTERM to exit, in seconds: the drain, then
    /// the requests in flight (cut off at this bound). Keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 25)]
    pub shutdown_grace_seconds: u64,
    /// Also require a valid cosign signature by this public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// After SIGTERM, keep serving /verify this long, in seconds, while
    /// /readyz answers 503 (so Kubernetes routes no new requests here first).
    #[arg(long, default_value_t = 5)]
    pub drain_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_may_start_with_a_hyphen() {
        let cli =
            Cli::try_parse_from(["release-capsule", "pull", "--capsule", "r:t", "--output", "o", "--registry-password", "-bXyZ"]).unwrap();
        let Command::Pull(args) = cli.command else { panic!("pull") };
        assert_eq!(args.auth.registry_password.as_deref(), Some("-bXyZ"));
    }
}
