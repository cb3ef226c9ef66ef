//! Git freight (spec section 11): `git-<sha>/` and its exact mirror
//! `current/` under the freight directory. `git-<sha>/` is immutable (the
//! same content is a no-op, other content a conflict unless overwriting is
//! asked for); `current/` moves only forward, by `createdAt`.

use super::plan::{differences, Desired, Part};
use super::records::{freight_yaml, read_freight, FoundFreight, FreightFacts, FREIGHT_FILE};
use super::snapshot::{Listing, Snapshot};
use super::target::RepoPath;
use super::GitOpsError;

/// The directory Kargo's source-snapshot stages read.
pub const CURRENT_DIR: &str = "current";

/// A release as freight: `freight.yaml` and the package under `<kind>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreightRelease {
    pub facts: FreightFacts,
    /// Relative to the release directory, sorted.
    files: Vec<Desired>,
}

impl FreightRelease {
    /// `package` holds the capsule's `package/<kind>/` files, paths relative to it.
    pub fn new(facts: FreightFacts, package: Vec<(String, Vec<u8>)>) -> Self {
        let kind = facts.package_kind.as_str();
        let mut files: Vec<Desired> = package.into_iter().map(|(path, bytes)| Desired::new(format!("{kind}/{path}"), bytes)).collect();
        files.push(Desired::new(FREIGHT_FILE, freight_yaml(&facts).into_bytes()));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self { facts, files }
    }

    pub fn files(&self) -> &[Desired] {
        &self.files
    }

    pub fn tag(&self) -> String {
        self.facts.revision.tag()
    }
}

/// An export: which release, where, and what may be replaced.
#[derive(Debug, Clone)]
pub struct FreightExport {
    pub dir: RepoPath,
    pub release: FreightRelease,
    /// Replace a `git-<sha>/` that holds something else.
    pub overwrite: bool,
    /// Move `current/` even to an older release.
    pub force_current: bool,
}

impl FreightExport {
    pub fn release_dir(&self) -> String {
        self.dir.join(&self.release.tag())
    }
    pub fn current_dir(&self) -> String {
        self.dir.join(CURRENT_DIR)
    }
}

/// What the repository holds for an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreightState {
    pub release: Option<Listing>,
    pub current: Option<Listing>,
    pub current_freight: Option<FoundFreight>,
}

pub async fn read_state(snapshot: &mut Snapshot<'_>, export: &FreightExport) -> Result<FreightState, GitOpsError> {
    let release = snapshot.files(&export.release_dir()).await?;
    let current = snapshot.files(&export.current_dir()).await?;
    let current_freight = match current.as_ref().filter(|c| c.contains_key(FREIGHT_FILE)) {
        Some(_) => snapshot.read(&format!("{}/{FREIGHT_FILE}", export.current_dir())).await?.and_then(|b| read_freight(&b)),
        None => None,
    };
    Ok(FreightState { release, current, current_freight })
}

pub fn plan(export: &FreightExport, state: &FreightState) -> Result<Part, GitOpsError> {
    let files = export.release.files();
    let mut part = Part::default();
    let release_dir = export.release_dir();
    let changed = differences(files, state.release.as_ref());
    match (&state.release, changed.is_empty()) {
        (_, true) => part.kept.push(format!("{release_dir}/")),
        (Some(_), false) if !export.overwrite => {
            return Err(GitOpsError::Conflict { path: format!("{release_dir}/"), differences: changed });
        }
        (existing, false) => {
            part.mirror(&release_dir, files, &changed);
            part.written.push(format!("{release_dir}/"));
            if existing.is_some() {
                part.notes.push(format!("{release_dir}/ held a different release and was overwritten, as asked"));
            }
        }
    }

    let current_dir = export.current_dir();
    let current_changed = differences(files, state.current.as_ref());
    if current_changed.is_empty() {
        part.kept.push(format!("{current_dir}/"));
        return Ok(part);
    }
    let held = state.current_freight.as_ref();
    let newer = held.and_then(|f| f.created).filter(|held_created| *held_created > export.release.facts.created);
    match newer {
        Some(held_created) if !export.force_current => {
            part.notes.push(format!(
                "{current_dir}/ holds {} (createdAt {held_created}), newer than this release (createdAt {}); it only moves forward, so it was left as it is",
                held.and_then(|f| f.tag.as_deref()).unwrap_or("another release"),
                export.release.facts.created
            ));
        }
        _ => {
            part.mirror(&current_dir, files, &current_changed);
            part.written.push(format!("{current_dir}/"));
        }
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ident::Digest;
    use crate::core::package::PackageKind;
    use crate::gitops::plan::{blob_sha, FILE_MODE};
    use crate::gitops::snapshot::Listed;

    fn release(sha_digit: char, created: &str, chart: &[u8]) -> FreightRelease {
        let facts = FreightFacts {
            revision: sha_digit.to_string().repeat(40).parse().unwrap(),
            image: "ghcr.io/acme/app".parse().unwrap(),
            image_digest: Digest::of(b"image"),
            package_kind: PackageKind::Helm,
            package_digest: Digest::of(chart),
            capsule: None,
            created: created.parse().unwrap(),
        };
        FreightRelease::new(facts, vec![("Chart.yaml".into(), chart.to_vec()), ("templates/a.yaml".into(), b"kind: A\n".to_vec())])
    }

    fn export(r: FreightRelease) -> FreightExport {
        FreightExport { dir: "w/freight".parse().unwrap(), release: r, overwrite: false, force_current: false }
    }

    fn as_listing(r: &FreightRelease) -> Listing {
        r.files().iter().map(|d| (d.path.clone(), Listed { mode: FILE_MODE.into(), sha: d.sha.clone() })).collect()
    }

    fn state_of(r: &FreightRelease, release: bool, current: Option<&FreightRelease>) -> FreightState {
        FreightState {
            release: release.then(|| as_listing(r)),
            current: current.map(as_listing),
            current_freight: current.map(|c| read_freight(freight_yaml(&c.facts).as_bytes()).unwrap()),
        }
    }

    #[test]
    fn a_first_export_writes_the_release_and_current() {
        let r = release('1', "2026-11-20T10:00:00Z", b"name: app\n");
        let e = export(r.clone());
        let part = plan(&e, &FreightState::default()).unwrap();
        assert_eq!(part.written, [format!("w/freight/{}/", r.tag()), "w/freight/current/".to_string()]);
        assert_eq!(part.changes.len(), 6, "three files, twice");
        assert!(part.changes.contains_key(&format!("w/freight/{}/helm/Chart.yaml", r.tag())));
        assert!(part.changes.contains_key("w/freight/current/freight.yaml"));
        assert_eq!(part.blobs.len(), 3, "each blob once");
    }

    #[test]
    fn the_same_export_again_changes_nothing() {
        let r = release('1', "2026-11-20T10:00:00Z", b"name: app\n");
        let part = plan(&export(r.clone()), &state_of(&r, true, Some(&r))).unwrap();
        assert!(part.changes.is_empty());
        assert_eq!(part.kept.len(), 2);
    }

    #[test]
    fn a_different_release_under_the_same_name_is_a_conflict_unless_overwriting() {
        let old = release('1', "2026-11-20T10:00:00Z", b"name: app\n");
        let new = release('1', "2026-11-20T10:00:00Z", b"name: changed\n");
        let err = plan(&export(new.clone()), &state_of(&old, true, Some(&old))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("helm/Chart.yaml") && text.contains("freight.yaml"), "{text}");
        let mut e = export(new);
        e.overwrite = true;
        let part = plan(&e, &state_of(&old, true, Some(&old))).unwrap();
        assert_eq!(part.written.len(), 2);
        assert!(!part.notes.is_empty());
    }

    #[test]
    fn current_moves_only_forward() {
        let newer = release('2', "2026-11-21T10:00:00Z", b"name: app\nversion: 2\n");
        let older = release('1', "2026-11-20T10:00:00Z", b"name: app\n");
        // The older release's own directory is still written; current/ stays.
        let part = plan(&export(older.clone()), &state_of(&older, false, Some(&newer))).unwrap();
        assert_eq!(part.written, [format!("w/freight/{}/", older.tag())]);
        assert!(part.notes[0].contains("only moves forward"), "{:?}", part.notes);
        assert!(part.changes.keys().all(|p| !p.starts_with("w/freight/current/")));
        // Asked for explicitly, it moves back.
        let mut e = export(older.clone());
        e.force_current = true;
        let part = plan(&e, &state_of(&older, false, Some(&newer))).unwrap();
        assert!(part.written.contains(&"w/freight/current/".to_string()));
        // Forward (or the same createdAt) replaces it, deleting what the old one had extra.
        let mut extra = as_listing(&older);
        extra.insert("helm/old.yaml".into(), Listed { mode: FILE_MODE.into(), sha: blob_sha(b"old") });
        let mut s = state_of(&newer, false, Some(&older));
        s.current = Some(extra);
        let part = plan(&export(newer), &s).unwrap();
        assert_eq!(part.changes.get("w/freight/current/helm/old.yaml"), Some(&None));
    }
}
