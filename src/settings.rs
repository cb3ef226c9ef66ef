//! Raw inputs (flags, environment) resolved once into validated settings. After
//! this, the rest of the program holds parsed values only.

use std::path::{Path, PathBuf};

use crate::cli::{BuildArgs, CapsuleArgs};
use crate::core::ident::{Digest, GitSha, IdentError, Repository, SourceUrl};
use crate::core::package::{PackageError, PackageKind};
use crate::core::reference::{Reference, ReferenceError};
use crate::core::timestamp::{Created, TimestampError};
pub use crate::registry::credentials::RegistryCredentials;

/// Reads an environment variable; a function so tests need no process env.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{flag} is required: {hint}")]
    Missing { flag: &'static str, hint: &'static str },
    // The cause is chained (#[source]) and printed by `{:#}`, not repeated here.
    #[error("{flag}")]
    Ident {
        flag: &'static str,
        #[source]
        source: IdentError,
    },
    #[error("{flag}")]
    Time {
        flag: &'static str,
        #[source]
        source: TimestampError,
    },
    #[error("--package-kind")]
    Kind(#[source] PackageError),
    #[error("{flag}")]
    Reference {
        flag: &'static str,
        #[source]
        source: ReferenceError,
    },
    #[error("{flag} {value}: {hint}")]
    Invalid { flag: &'static str, value: String, hint: &'static str },
    #[error("{flag}")]
    Key {
        flag: &'static str,
        #[source]
        source: crate::sign::keys::KeyError,
    },
    #[error("{flag} {path}: cannot be read")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn parse<T: std::str::FromStr<Err = IdentError>>(flag: &'static str, v: &str) -> Result<T, SettingsError> {
    v.trim().parse().map_err(|source| SettingsError::Ident { flag, source })
}

/// What names the release and its package, validated.
#[derive(Debug, Clone)]
pub struct CapsuleSettings {
    pub sha: GitSha,
    pub image: Repository,
    pub image_digest: Option<Digest>,
    pub capsule: Repository,
    pub source: SourceUrl,
    pub package_kind: PackageKind,
    pub package_path: PathBuf,
    /// The package directory relative to the source repository root: the same
    /// string in every checkout, so provenance does not depend on where CI cloned.
    pub package_source_path: String,
    pub created: Option<Created>,
    pub sbom: Option<PathBuf>,
    pub provenance: Option<PathBuf>,
    pub unpacked: Option<PathBuf>,
    pub json: bool,
    /// Layer 1, the Helm chart (spec section 5); only a Helm package has one.
    pub helm_layer: bool,
}

impl CapsuleSettings {
    pub fn resolve(args: &CapsuleArgs, env: Env) -> Result<Self, SettingsError> {
        let sha = args
            .sha
            .as_deref()
            .ok_or(SettingsError::Missing { flag: "--sha", hint: "pass the full 40-hex commit, e.g. --sha \"$(git rev-parse HEAD)\"" })?;
        let sha: GitSha = parse("--sha", sha)?;
        let image: Repository = parse(
            "--image",
            args.image.as_deref().ok_or(SettingsError::Missing {
                flag: "--image",
                hint: "pass the app image repository without a tag, e.g. --image ghcr.io/my-org/my-app",
            })?,
        )?;
        let image_digest = args.image_digest.as_deref().map(|d| parse("--image-digest", d)).transpose()?;
        let capsule = match args.capsule_repository.as_deref() {
            Some(c) => parse("--capsule-repository", c)?,
            None => Repository::default_capsule_for(&image),
        };
        let source = match args.source_repository.clone().or_else(|| github_source(env)) {
            Some(url) => parse("--source-repository", &url)?,
            None => {
                return Err(SettingsError::Missing {
                    flag: "--source-repository",
                    hint: "pass the https URL of the source repository, e.g. --source-repository https://github.com/my-org/my-app",
                })
            }
        };
        let package_kind: PackageKind = args.package_kind.parse().map_err(SettingsError::Kind)?;
        let package_path = args
            .package_path
            .clone()
            .ok_or(SettingsError::Missing { flag: "--package-path", hint: "pass the chart (or kustomize) directory" })?;
        let created = match (&args.created, env("SOURCE_DATE_EPOCH")) {
            (Some(c), _) => Some(c.parse().map_err(|source| SettingsError::Time { flag: "--created", source })?),
            (None, Some(epoch)) => {
                Some(Created::from_epoch_str(&epoch).map_err(|source| SettingsError::Time { flag: "SOURCE_DATE_EPOCH", source })?)
            }
            (None, None) => None,
        };
        Ok(Self {
            sha,
            image,
            image_digest,
            capsule,
            source,
            package_kind,
            package_source_path: source_relative_path(&package_path),
            package_path,
            created,
            sbom: args.sbom.clone(),
            provenance: args.provenance.clone(),
            unpacked: args.unpacked.clone(),
            json: args.json,
            helm_layer: !args.no_helm_layer,
        })
    }
}

fn github_source(env: Env) -> Option<String> {
    let repo = env("GITHUB_REPOSITORY")?;
    let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    Some(format!("{}/{repo}", server.trim_end_matches('/')))
}

/// The path of `dir` relative to the enclosing git work tree (the nearest
/// ancestor with a `.git`), else the path as given, normalized.
pub fn source_relative_path(dir: &Path) -> String {
    let normalized = |p: &Path| {
        let s: Vec<String> = p
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if s.is_empty() {
            ".".to_owned()
        } else {
            s.join("/")
        }
    };
    if let Ok(real) = std::fs::canonicalize(dir) {
        for root in real.ancestors() {
            if root.join(".git").exists() {
                return normalized(real.strip_prefix(root).unwrap_or(&real));
            }
        }
    }
    if dir.is_absolute() {
        dir.file_name().map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned())
    } else {
        normalized(dir)
    }
}

#[derive(Debug, Clone)]
pub struct BuildSettings {
    pub capsule: CapsuleSettings,
    pub image_digest: Digest,
    pub created: Created,
    pub output: PathBuf,
}

impl BuildSettings {
    pub fn resolve(args: &BuildArgs, env: Env) -> Result<Self, SettingsError> {
        let capsule = CapsuleSettings::resolve(&args.capsule, env)?;
        let image_digest = capsule.image_digest.clone().ok_or(SettingsError::Missing {
            flag: "--image-digest",
            hint: "build works offline, so pass the digest <image>:git-<sha> resolves to (publish can look it up)",
        })?;
        let created = capsule.created.ok_or(SettingsError::Missing {
            flag: "--created",
            hint: "pass the release date (RFC 3339) or set SOURCE_DATE_EPOCH; build never uses the clock",
        })?;
        Ok(Self { capsule, image_digest, created, output: args.output.clone() })
    }
}

/// Reads an optional user file named by a flag.
pub fn read_optional(flag: &'static str, path: Option<&Path>) -> Result<Option<crate::core::capsule::UserDocument>, SettingsError> {
    path.map(|p| {
        std::fs::read(p)
            .map(|bytes| crate::core::capsule::UserDocument { path: p.display().to_string(), bytes })
            .map_err(|source| SettingsError::Read { flag, path: p.to_owned(), source })
    })
    .transpose()
}

impl RegistryCredentials {
    /// The login of the flags (or environment), for `capsule`'s registry
    /// unless `--registry-login-host` names the registries.
    pub fn resolve(args: &crate::cli::RegistryAuthArgs, env: Env, capsule: &Repository) -> Result<Self, SettingsError> {
        let named: Vec<String> = if args.registry_login_host.is_empty() {
            env("REGISTRY_LOGIN_HOST")
                .map(|v| v.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect())
                .unwrap_or_default()
        } else {
            args.registry_login_host.iter().map(|h| h.trim().to_owned()).collect()
        };
        for host in &named {
            let ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
            if !ok {
                return Err(SettingsError::Invalid {
                    flag: "--registry-login-host",
                    value: host.clone(),
                    hint: "give a registry host, such as ghcr.io or 127.0.0.1:5000, without a scheme or path",
                });
            }
        }
        Ok(Self {
            username: args.registry_username.clone().or_else(|| env("REGISTRY_USERNAME")),
            password: args.registry_password.clone().or_else(|| env("REGISTRY_PASSWORD")),
            hosts: if named.is_empty() { vec![capsule.registry().to_owned()] } else { named },
        })
    }
}

#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub capsule: CapsuleSettings,
    pub credentials: RegistryCredentials,
    pub image_layout: Option<PathBuf>,
    pub on_conflict: crate::cli::OnConflict,
    pub dry_run: bool,
    /// A dry run may find no image under the tag (a pull request whose image
    /// was never pushed): the package is then validated on its own.
    pub allow_missing_image: bool,
    /// Sign the published capsule with this key (spec section 9).
    pub signing_key: Option<std::sync::Arc<crate::sign::keys::PrivateKey>>,
}

impl PublishSettings {
    pub fn resolve(args: &crate::cli::PublishArgs, env: Env) -> Result<Self, SettingsError> {
        let capsule = CapsuleSettings::resolve(&args.capsule, env)?;
        Ok(Self {
            credentials: RegistryCredentials::resolve(&args.auth, env, &capsule.capsule)?,
            capsule,
            image_layout: args.image_layout.clone(),
            on_conflict: args.on_conflict,
            dry_run: args.dry_run,
            allow_missing_image: false,
            signing_key: args.signing_key.as_deref().map(|path| signing_key_file(path, env)).transpose()?.map(std::sync::Arc::new),
        })
    }
}

/// What `verify` checks: a capsule against the image it must belong to.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    pub capsule: Reference,
    /// `<repo>:git-<sha>`, without a digest.
    pub image: Reference,
    pub image_digest: Option<Digest>,
    pub output: Option<PathBuf>,
    pub credentials: RegistryCredentials,
    pub json: bool,
    /// Require a valid signature by this key (spec section 8, check 5).
    pub public_key: Option<crate::sign::keys::PublicKey>,
}

/// A cosign private key file, opened with COSIGN_PASSWORD.
pub fn signing_key_file(path: &Path, env: Env) -> Result<crate::sign::keys::PrivateKey, SettingsError> {
    crate::sign::keys::PrivateKey::from_file(path, env("COSIGN_PASSWORD").as_deref())
        .map_err(|source| SettingsError::Key { flag: "--signing-key", source })
}

/// A cosign public key file (cosign.pub).
pub fn public_key_file(flag: &'static str, path: &Path) -> Result<crate::sign::keys::PublicKey, SettingsError> {
    crate::sign::keys::PublicKey::from_file(path).map_err(|source| SettingsError::Key { flag, source })
}

fn reference(flag: &'static str, value: &str) -> Result<Reference, SettingsError> {
    value.trim().parse().map_err(|source| SettingsError::Reference { flag, source })
}

impl VerifySettings {
    pub fn resolve(args: &crate::cli::VerifyArgs, env: Env) -> Result<Self, SettingsError> {
        let image = reference("--image", &args.image)?;
        let release_tag = image.tag.as_deref().and_then(|t| t.strip_prefix("git-")).is_some_and(|sha| sha.parse::<GitSha>().is_ok());
        if !release_tag || image.digest.is_some() {
            return Err(SettingsError::Invalid {
                flag: "--image",
                value: args.image.clone(),
                hint: "expected <repository>:git-<40-hex sha>, the tag that names the release; pass a digest with --image-digest",
            });
        }
        let capsule = reference("--capsule", &args.capsule)?;
        Ok(Self {
            credentials: RegistryCredentials::resolve(&args.auth, env, &capsule.repo)?,
            capsule,
            image,
            image_digest: args.image_digest.as_deref().map(|d| parse("--image-digest", d)).transpose()?,
            output: args.output.clone(),
            public_key: args.public_key.as_deref().map(|p| public_key_file("--public-key", p)).transpose()?,
            json: args.json,
        })
    }
}

/// What `pull` fetches and where it unpacks it.
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub capsule: Reference,
    pub output: PathBuf,
    pub credentials: RegistryCredentials,
    pub json: bool,
}

impl PullSettings {
    pub fn resolve(args: &crate::cli::PullArgs, env: Env) -> Result<Self, SettingsError> {
        let capsule = reference("--capsule", &args.capsule)?;
        Ok(Self {
            credentials: RegistryCredentials::resolve(&args.auth, env, &capsule.repo)?,
            capsule,
            output: args.output.clone(),
            json: args.json,
        })
    }
}

#[cfg(test)]
mod tests;
