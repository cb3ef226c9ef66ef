//! The package under `package/<kind>/`: which files go in, in which order, and
//! the checks that make Kargo's `helm-template` (or kustomize) work from the
//! capsule alone. The directory is walked by `tree::package`, which applies
//! this module's rules ([`HelmIgnore`], [`check_name`], the limits) as it
//! goes; [`check`] then decides on the listing. The result depends on file
//! names and contents, never on mtimes, owners or walk order.

mod chart;
mod helmignore;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

pub use chart::{ChartInfo, Dependency};
pub use helmignore::{glob_match, HelmIgnore, RuleError};

use super::ident::{hex, Digest};

/// Kargo's limits (spec section 2).
pub const MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;
pub const MAX_TOTAL_SIZE: u64 = 100 * 1024 * 1024;
/// Ours (spec section 2): entries (files and directories) in a layer, so that
/// a capsule of empty files cannot exhaust a consumer's inodes or time.
pub const MAX_ENTRIES: usize = 10_000;
/// The entries layer 0 holds besides the package's own: `metadata/`, its two
/// files, `package/`, `package/<kind>/` and `release.yaml`.
pub const CAPSULE_OWN_ENTRIES: usize = 6;
/// Entries a package may have, so that layer 0 stays within [`MAX_ENTRIES`].
pub const MAX_PACKAGE_ENTRIES: usize = MAX_ENTRIES - CAPSULE_OWN_ENTRIES;

/// Folders never packaged, wherever they are.
pub const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".bzr", "_darcs", "CVS"];
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    Helm,
    Kustomize,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Helm => "helm",
            Self::Kustomize => "kustomize",
        }
    }
    /// `package/<kind>`: where the package sits in the capsule.
    pub fn capsule_path(self) -> String {
        format!("package/{}", self.as_str())
    }
}

impl FromStr for PackageKind {
    type Err = PackageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "helm" => Ok(Self::Helm),
            "kustomize" => Ok(Self::Kustomize),
            other => Err(PackageError::UnknownKind { kind: other.to_owned() }),
        }
    }
}

impl fmt::Display for PackageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem at a place in the package, in the form CI annotations take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Relative to the package root, `/`-separated; empty for the package itself.
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("unknown package kind {kind:?}: use `helm` or `kustomize`")]
    UnknownKind { kind: String },
    #[error("package path {path}: does not exist; pass the chart (or kustomize) directory with --package-path")]
    NotFound { path: PathBuf },
    #[error("package path {path}: is not a directory; pass the chart directory, not a file or .tgz")]
    NotADirectory { path: PathBuf },
    #[error("{path}: cannot be read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file name is not valid UTF-8; rename it (capsule entry names are UTF-8)")]
    NonUtf8Name { path: PathBuf },
    #[error("{rel}: the name holds {what}, which Kargo's untar or sha256sum cannot carry; rename it")]
    UnsafeName { rel: String, what: &'static str },
    #[error("{rel}: symlink to {target} leaves the package root; copy the file into the package instead")]
    SymlinkEscapes { rel: String, target: PathBuf },
    #[error("{rel}: symlink target {target} does not exist; fix or remove the link")]
    SymlinkDangles { rel: String, target: PathBuf },
    #[error("{rel}: symlink loop; a directory link points at one of its own parents")]
    SymlinkLoop { rel: String },
    #[error("{rel}: is a {what}; only regular files and directories can be packaged")]
    SpecialFile { rel: String, what: &'static str },
    #[error("{rel}: {size} bytes is over Kargo's 50 MiB limit for a single file; leave it out with .helmignore or shrink it")]
    FileTooLarge { rel: String, size: u64 },
    #[error("package: {size} bytes in total is over Kargo's 100 MiB limit; leave large files out with .helmignore")]
    TotalTooLarge { size: u64 },
    #[error(
        "package: {count} entries (files and directories); a capsule layer holds at most {MAX_ENTRIES} entries, \
         {CAPSULE_OWN_ENTRIES} of them the capsule's own, so a package may have at most {MAX_PACKAGE_ENTRIES}; \
         leave files out (with .helmignore for a chart) or split the package"
    )]
    TooManyEntries { count: usize },
    #[error("{rel}:{line}: {message}", line = line.map_or(String::new(), |l| l.to_string()))]
    ChartYaml { rel: String, line: Option<usize>, message: String },
    #[error("Chart.yaml: missing; a Helm package needs Chart.yaml at the root of --package-path (use --package-kind kustomize for a kustomize tree)")]
    NoChartYaml,
    #[error(".helmignore:{}: {}", .0.line, .0.message)]
    HelmIgnore(RuleError),
    #[error("Chart.yaml:{}: dependency {name:?} is not vendored under charts/; run `helm dependency build` and commit charts/ (Kargo's helm-template cannot fetch it)", line.map_or(String::new(), |l| l.to_string()))]
    DependencyNotVendored { name: String, line: Option<usize> },
    #[error("no kustomization file at the package root; add kustomization.yaml (or .yml, or Kustomization)")]
    NoKustomization,
    #[error("{rel}:{line}: is not valid YAML: {message}", line = line.map_or(String::new(), |l| l.to_string()))]
    Kustomization { rel: String, line: Option<usize>, message: String },
}

impl PackageError {
    /// Where in the package this error points, for annotations.
    pub fn diagnostic(&self) -> Diagnostic {
        let at = |file: &str, line: Option<usize>| Diagnostic { file: file.to_owned(), line, message: self.to_string() };
        match self {
            Self::UnsafeName { rel, .. }
            | Self::SymlinkEscapes { rel, .. }
            | Self::SymlinkDangles { rel, .. }
            | Self::SymlinkLoop { rel }
            | Self::SpecialFile { rel, .. }
            | Self::FileTooLarge { rel, .. } => at(rel, None),
            Self::ChartYaml { rel, line, .. } | Self::Kustomization { rel, line, .. } => at(rel, *line),
            Self::NoChartYaml => at("Chart.yaml", None),
            Self::HelmIgnore(e) => at(".helmignore", Some(e.line)),
            Self::DependencyNotVendored { line, .. } => at("Chart.yaml", *line),
            _ => at("", None),
        }
    }
}

/// One entry of `package/<kind>/`, in archive order.
#[derive(Debug, Clone)]
pub enum PackageEntry {
    Dir { path: String },
    File(PackageFile),
}

#[derive(Debug, Clone)]
pub struct PackageFile {
    /// Relative to the package root, `/`-separated.
    pub path: String,
    /// Where the bytes are read from (a symlink's target is read through it).
    pub source: PathBuf,
    pub size: u64,
    pub sha256: Digest,
    /// Lowercase hex SHA-1: SPDX 2.3 requires it for every file.
    pub sha1: String,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub kind: PackageKind,
    /// Depth-first, siblings sorted byte-wise: the archive order of spec section 2.
    pub entries: Vec<PackageEntry>,
    pub chart: Option<ChartInfo>,
    /// The package tree digest of spec section 3.
    pub digest: Digest,
    pub total_size: u64,
    pub warnings: Vec<Diagnostic>,
}

impl Package {
    pub fn files(&self) -> impl Iterator<Item = &PackageFile> {
        self.entries.iter().filter_map(|e| match e {
            PackageEntry::File(f) => Some(f),
            PackageEntry::Dir { .. } => None,
        })
    }
    pub fn file_count(&self) -> usize {
        self.files().count()
    }
    /// Chart name, or the directory-less "kustomize" for kustomize trees.
    pub fn display_name(&self) -> String {
        match &self.chart {
            Some(c) => format!("{} {}", c.name, c.version),
            None => self.kind.to_string(),
        }
    }
}

/// `<sha256>  <path>\n` per file in byte-wise path order, hashed: the same text
/// `find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum` makes.
pub fn tree_digest<'a>(files: impl Iterator<Item = (&'a str, &'a Digest)>) -> Digest {
    let mut lines: Vec<(&str, &Digest)> = files.collect();
    lines.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (path, digest) in lines {
        h.update(digest.hex().as_bytes());
        h.update(b"  ");
        h.update(path.as_bytes());
        h.update(b"\n");
    }
    Digest::from_hasher(h)
}

/// What the walk of a package directory found, in archive order.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<PackageEntry>,
    /// Bytes of the files listed.
    pub total: u64,
    /// Entries (files and directories) seen, those past the limit included.
    pub counted: usize,
}

/// A name the walk found, checked against what Kargo's `untar` and
/// `sha256sum` can carry: it skips any entry whose name contains `\` or `..`
/// anywhere (not only as a segment), so such a file would vanish at promotion.
pub fn check_name(rel: &str) -> Result<(), PackageError> {
    let what = if rel.contains('\\') {
        "a backslash"
    } else if rel.contains("..") {
        "two dots in a row"
    } else if rel.contains('\n') || rel.contains('\r') {
        "a line break"
    } else {
        return Ok(());
    };
    Err(PackageError::UnsafeName { rel: rel.to_owned(), what })
}

/// The package of `kind` that `listing` holds, checked: the entry limit, and
/// `Chart.yaml` (vendored dependencies) or the kustomization. `read_text`
/// gives a listed file's text (`None` for a file that is not listed).
pub fn check(
    kind: PackageKind,
    listing: Listing,
    read_text: &dyn Fn(&PackageFile) -> Result<String, PackageError>,
) -> Result<Package, PackageError> {
    let Listing { entries, total, counted } = listing;
    if counted > MAX_PACKAGE_ENTRIES {
        return Err(PackageError::TooManyEntries { count: counted });
    }
    let read_text = |rel: &str| -> Result<Option<String>, PackageError> {
        entries
            .iter()
            .find_map(|e| match e {
                PackageEntry::File(f) if f.path == rel => Some(f),
                _ => None,
            })
            .map(read_text)
            .transpose()
    };
    let has_file = |pred: &dyn Fn(&str) -> bool| entries.iter().any(|e| matches!(e, PackageEntry::File(f) if pred(&f.path)));

    let mut warnings = Vec::new();
    let chart = match kind {
        PackageKind::Helm => {
            let text = read_text("Chart.yaml")?.ok_or(PackageError::NoChartYaml)?;
            let chart = chart::parse_chart_yaml(&text).map_err(|p| PackageError::ChartYaml {
                rel: "Chart.yaml".into(),
                line: p.line,
                message: format!("Chart.yaml {}", p.message),
            })?;
            for dep in &chart.dependencies {
                let unpacked = format!("charts/{}/Chart.yaml", dep.name);
                let archived = format!("charts/{}-", dep.name);
                let vendored = has_file(&|p: &str| {
                    p == unpacked
                        || p.strip_prefix(&archived).is_some_and(|rest| {
                            !rest.contains('/') && rest.ends_with(".tgz") && rest.starts_with(|c: char| c.is_ascii_digit() || c == 'v')
                        })
                });
                if !vendored {
                    return Err(PackageError::DependencyNotVendored { name: dep.name.clone(), line: dep.line });
                }
            }
            if chart.app_version.is_none() {
                warnings.push(Diagnostic {
                    file: "Chart.yaml".into(),
                    line: None,
                    message: "Chart.yaml has no appVersion; release.yaml will record none".into(),
                });
            }
            if !has_file(&|p: &str| p.starts_with("templates/")) {
                warnings.push(Diagnostic {
                    file: "templates".into(),
                    line: None,
                    message: "the chart has no templates/; it renders nothing".into(),
                });
            }
            Some(chart)
        }
        PackageKind::Kustomize => {
            let name = KUSTOMIZATION_FILES.iter().find(|n| has_file(&|p: &str| p == **n)).ok_or(PackageError::NoKustomization)?;
            let text = read_text(name)?.unwrap_or_default();
            if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                return Err(PackageError::Kustomization {
                    rel: (*name).to_owned(),
                    line: e.location().map(|l| l.line()),
                    message: e.to_string(),
                });
            }
            None
        }
    };
    let digest = tree_digest(entries.iter().filter_map(|e| match e {
        PackageEntry::File(f) => Some((f.path.as_str(), &f.sha256)),
        PackageEntry::Dir { .. } => None,
    }));
    Ok(Package { kind, entries, chart, digest, total_size: total, warnings })
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(&sha1::Sha1::digest(bytes))
}
