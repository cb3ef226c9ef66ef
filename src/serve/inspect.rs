//! The expensive, immutable part of a verification, done once per capsule
//! digest: fetch the manifest by digest, download and hash the layer, unpack
//! it safely, recompute the package digest and check everything release.yaml
//! says about the capsule itself (steps 1 to 3 and the digest-bound part of
//! step 4). Content behind a digest never changes, so the outcome is kept in
//! a bounded cache; tags are never cached (the caller resolves them on every
//! request).
//!
//! Concurrent requests for a digest not yet inspected share one inspection:
//! each digest has one cell, and the first request fills it while the others
//! wait on it. A failure to reach the registry fills nothing, so the next
//! request tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::core::ident::{Digest, Repository};
use crate::core::reference::Reference;
use crate::core::release::ReleaseDoc;
use crate::core::verify::{self, Checks};
use crate::failure::Failure;
use crate::registry::RegistryClient;
use crate::scratch::WorkDir;
use crate::trust;

/// What a capsule digest turned out to be.
#[derive(Debug)]
pub struct Inspection {
    /// Steps 1 to 3, and the checks of step 4 that depend on the capsule alone.
    pub checks: Checks,
    pub release: Option<ReleaseDoc>,
}

/// Inspects `repo@digest`: everything but the checks that need the caller's
/// expectations. `Err` only when the registry could not be asked (nothing to
/// cache); a capsule that fails its checks is an `Ok` inspection.
pub async fn inspect<C: RegistryClient>(client: &C, repo: &Repository, digest: &Digest) -> Result<Inspection, Failure> {
    let work = WorkDir::new()?;
    let tree = work.path().join("tree");
    let capsule = Reference { repo: repo.clone(), tag: None, digest: Some(digest.clone()) };
    let mut checks = Checks::default();
    let fetched = trust::fetch(client, &capsule, &tree, work.path(), &mut checks).await?;
    let release = fetched.unpacked.and_then(|unpacked| {
        // Only listed files are read: unpack made them, as regular files, under `tree`.
        let read = |path: &str| std::fs::read(tree.join(path)).ok();
        let doc = verify::read_release(&mut checks, &unpacked.files, &read);
        let annotations = &unpacked.manifest.manifest.annotations;
        verify::check_contents(&mut checks, doc.as_ref(), annotations, &unpacked.files, &read, unpacked.chart.as_ref());
        doc
    });
    Ok(Inspection { checks, release })
}

/// Inspections by capsule digest, at most `capacity` of them (least recently
/// used first out).
pub struct InspectionCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: HashMap<Digest, Slot>,
    clock: u64,
}

struct Slot {
    cell: Arc<OnceCell<Arc<Inspection>>>,
    last_used: u64,
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
}

impl InspectionCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::new(State::default()) }
    }

    pub fn len(&self) -> usize {
        self.lock().slots.values().filter(|s| s.cell.initialized()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cell for `digest`, made (and the oldest evicted) when absent.
    fn cell(&self, digest: &Digest) -> Arc<OnceCell<Arc<Inspection>>> {
        if self.capacity == 0 {
            return Arc::new(OnceCell::new());
        }
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(slot) = state.slots.get_mut(digest) {
            slot.last_used = now;
            return Arc::clone(&slot.cell);
        }
        if state.slots.len() >= self.capacity {
            if let Some(oldest) = state.slots.iter().min_by_key(|(_, s)| s.last_used).map(|(d, _)| d.clone()) {
                state.slots.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        state.slots.insert(digest.clone(), Slot { cell: Arc::clone(&cell), last_used: now });
        cell
    }

    /// The inspection of `digest`, made by `inspect` unless cached or under
    /// way in another request (then this one waits for it).
    pub async fn get_or_inspect<F, Fut>(&self, digest: &Digest, inspect: F) -> Result<(Arc<Inspection>, CacheUse), Failure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Inspection, Failure>>,
    {
        let cell = self.cell(digest);
        if let Some(done) = cell.get() {
            return Ok((Arc::clone(done), CacheUse::Hit));
        }
        let mut ran = false;
        let value = cell
            .get_or_try_init(|| {
                ran = true;
                async { inspect().await.map(Arc::new) }
            })
            .await?;
        // A request that waited for another's inspection did no work itself.
        Ok((Arc::clone(value), if ran { CacheUse::Miss } else { CacheUse::Hit }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn inspection() -> Inspection {
        Inspection { checks: Checks::default(), release: None }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_inspection() {
        let cache = InspectionCache::new(8);
        let runs = AtomicUsize::new(0);
        let work = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(inspection())
        };
        let d = digest(1);
        let results = futures_util::future::join_all((0..10).map(|_| cache.get_or_inspect(&d, work))).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let misses = results.iter().filter(|r| r.as_ref().unwrap().1 == CacheUse::Miss).count();
        assert_eq!(misses, 1);
        let (_, used) = cache.get_or_inspect(&d, work).await.unwrap();
        assert_eq!(used, CacheUse::Hit);
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_the_oldest_entry_leaves_first() {
        let cache = InspectionCache::new(2);
        let e = cache.get_or_inspect(&digest(1), || async { Err(Failure::network(anyhow::anyhow!("registry down"))) }).await;
        assert!(e.is_err());
        assert_eq!(cache.len(), 0);
        let ok = || async { Ok(inspection()) };
        for n in [1, 2] {
            cache.get_or_inspect(&digest(n), ok).await.unwrap();
        }
        cache.get_or_inspect(&digest(1), ok).await.unwrap(); // 1 is now the most recent
        cache.get_or_inspect(&digest(3), ok).await.unwrap(); // evicts 2
        assert_eq!(cache.get_or_inspect(&digest(1), ok).await.unwrap().1, CacheUse::Hit);
        assert_eq!(cache.get_or_inspect(&digest(2), ok).await.unwrap().1, CacheUse::Miss);
        let none = InspectionCache::new(0);
        none.get_or_inspect(&digest(1), ok).await.unwrap();
        assert_eq!(none.get_or_inspect(&digest(1), ok).await.unwrap().1, CacheUse::Miss);
    }
}
