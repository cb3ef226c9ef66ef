//! Legacy-gitflow gate records (spec section 12): on a push to a gate
//! branch, `<gate-path>/<branch>/merged/git-<sha>.yaml` (written once, then
//! kept as it is, `mergedAt` included) and `<gate-path>/<branch>/current.yaml`:
//! what the branch holds now, the newest push processed, ordered by the push
//! time (`mergedAt`, from the payload's `pushed_at`). A re-run of an older push
//! leaves it alone; a later push moves it, even back to a revision that has a
//! `merged/` record already (a force-push back), with the later push's time.

use super::plan::{Desired, Part};
use super::records::{gate_yaml, read_gate, GateRecord};
use super::snapshot::Snapshot;
use super::target::{BranchName, RepoPath};
use super::GitOpsError;

#[derive(Debug, Clone)]
pub struct GateWrite {
    pub dir: RepoPath,
    /// The gate branch the commit was pushed to (not the GitOps branch).
    pub branch: BranchName,
    pub record: GateRecord,
}

impl GateWrite {
    pub fn merged_path(&self) -> String {
        self.dir.join(&format!("{}/merged/{}.yaml", self.branch, self.record.revision.tag()))
    }
    pub fn current_path(&self) -> String {
        self.dir.join(&format!("{}/current.yaml", self.branch))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateState {
    pub merged: Option<Vec<u8>>,
    pub current: Option<Vec<u8>>,
}

pub async fn read_state(snapshot: &mut Snapshot<'_>, gate: &GateWrite) -> Result<GateState, GitOpsError> {
    Ok(GateState { merged: snapshot.read(&gate.merged_path()).await?, current: snapshot.read(&gate.current_path()).await? })
}

pub fn plan(gate: &GateWrite, state: &GateState) -> Result<Part, GitOpsError> {
    let mut part = Part::default();
    let merged_path = gate.merged_path();
    let this_push = Desired::new("", gate_yaml(&gate.record).into_bytes());
    match &state.merged {
        Some(bytes) => {
            let found = read_gate(bytes).map_err(|message| GitOpsError::BadRecord { path: merged_path.clone(), message })?;
            if found.revision != gate.record.revision {
                let message = format!("it names revision {}", found.revision);
                return Err(GitOpsError::BadRecord { path: merged_path, message });
            }
            part.kept.push(merged_path);
        }
        None => {
            part.put(merged_path.clone(), &this_push);
            part.written.push(merged_path);
        }
    }

    let current_path = gate.current_path();
    if state.current.as_deref() == Some(this_push.bytes.as_slice()) {
        part.kept.push(current_path);
        return Ok(part);
    }
    // Only a later push moves it. A record that does not read is replaced.
    let held = state.current.as_deref().and_then(|b| read_gate(b).ok());
    match held.filter(|held| held.merged_at >= gate.record.merged_at) {
        Some(held) => part.notes.push(format!(
            "{current_path} holds a push that is not older ({} at {}) than this one ({} at {}); it was left as it is",
            held.revision.tag(),
            held.merged_at,
            gate.record.revision.tag(),
            gate.record.merged_at
        )),
        None => {
            part.put(current_path.clone(), &this_push);
            part.written.push(current_path);
        }
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(sha_digit: char, merged_at: &str) -> GateWrite {
        GateWrite {
            dir: "warehouses/codeai/legacy-gitflow".parse().unwrap(),
            branch: "production".parse().unwrap(),
            record: GateRecord { revision: sha_digit.to_string().repeat(40).parse().unwrap(), merged_at: merged_at.parse().unwrap() },
        }
    }

    #[test]
    fn a_first_record_writes_both_files_with_the_same_bytes() {
        let g = gate('1', "2026-11-20T10:00:00Z");
        let part = plan(&g, &GateState::default()).unwrap();
        assert_eq!(
            part.written,
            [
                format!("warehouses/codeai/legacy-gitflow/production/merged/git-{}.yaml", "1".repeat(40)),
                "warehouses/codeai/legacy-gitflow/production/current.yaml".to_string()
            ]
        );
        let shas: Vec<_> = part.changes.values().collect();
        assert_eq!(shas[0], shas[1]);
        assert_eq!(part.blobs.len(), 1);
    }

    #[test]
    fn an_existing_record_is_kept_with_its_merged_at_and_current_takes_the_later_push() {
        let first = gate('1', "2026-11-20T10:00:00Z");
        let existing = gate_yaml(&first.record).into_bytes();
        // Pushed again later (a force-push back after '2' was pushed).
        let again = gate('1', "2026-11-25T00:00:00Z");
        let between = gate_yaml(&gate('2', "2026-11-21T00:00:00Z").record).into_bytes();
        let part = plan(&again, &GateState { merged: Some(existing.clone()), current: Some(between) }).unwrap();
        assert_eq!(part.written, [again.current_path()]);
        assert_eq!(part.kept, [again.merged_path()], "merged/ keeps its first mergedAt");
        assert_eq!(part.blobs.values().next(), Some(&gate_yaml(&again.record).into_bytes()), "current: this push's time");
        // A re-run of that same push: nothing to do.
        let now = gate_yaml(&again.record).into_bytes();
        let part = plan(&again, &GateState { merged: Some(existing.clone()), current: Some(now.clone()) }).unwrap();
        assert!(part.changes.is_empty());
        // A re-run of the first push: older than what current holds, left alone.
        let part = plan(&first, &GateState { merged: Some(existing), current: Some(now) }).unwrap();
        assert!(part.changes.is_empty());
        assert!(part.notes[0].contains("not older"), "{:?}", part.notes);
    }

    #[test]
    fn current_does_not_move_back_to_an_earlier_push() {
        let old = gate('1', "2026-11-20T10:00:00Z");
        let later = gate_yaml(&gate('2', "2026-11-21T10:00:00Z").record).into_bytes();
        let part = plan(&old, &GateState { merged: None, current: Some(later.clone()) }).unwrap();
        assert_eq!(part.written, [old.merged_path()]);
        assert!(part.notes[0].contains("not older"), "{:?}", part.notes);
        // The same time, another revision: the one processed first stays.
        let tie = gate('3', "2026-11-21T10:00:00Z");
        let part = plan(&tie, &GateState { merged: None, current: Some(later) }).unwrap();
        assert_eq!(part.written, [tie.merged_path()]);
        // A current.yaml that does not read is replaced.
        let part = plan(&old, &GateState { merged: None, current: Some(b"{{".to_vec()) }).unwrap();
        assert_eq!(part.written, [old.merged_path(), old.current_path()]);
    }

    #[test]
    fn a_record_that_is_not_one_is_an_error() {
        let g = gate('1', "2026-11-20T10:00:00Z");
        let other = gate_yaml(&gate('2', "2026-11-20T10:00:00Z").record).into_bytes();
        let err = plan(&g, &GateState { merged: Some(other), current: None }).unwrap_err().to_string();
        assert!(err.contains("names revision"), "{err}");
        let err = plan(&g, &GateState { merged: Some(b"{{".to_vec()), current: None }).unwrap_err().to_string();
        assert!(err.contains("not YAML"), "{err}");
    }
}
