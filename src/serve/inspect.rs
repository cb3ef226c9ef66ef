//! The expensive, immutable part of a verification, done once per capsule:
//! fetch the manifest by digest, download and hash the layer, unpack it
//! safely, recompute the package digest and check everything release.yaml
//! says about the capsule itself (steps 1 to 3 and the digest-bound part of
//! step 4). Content behind a digest never changes, so the outcome is kept in
//! a bounded cache; tags are never cached (the caller resolves them on every
//! request).
//!
//! What is kept is keyed by (repository, digest), and only when it was made
//! of content actually fetched from that repository (spec section 10): an
//! absent manifest or blob, content that did not match its digest, and any
//! failure to ask the registry are never kept, so no request can make a later
//! one fail, and content fetched from one repository never answers for
//! another (which may not hold it: Kargo downloads from the repository named).
//!
//! Concurrent requests for a capsule not yet inspected share one inspection:
//! each key has one cell, and the first request fills it while the others
//! wait on it. An outcome that is not kept fills nothing, so the next request
//! (a waiting one included) inspects again.

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
    /// Whether the checks ran on content fetched whole from the repository
    /// (else something was absent or did not match its digest): only such
    /// an outcome is a fact about the digest, and kept.
    pub of_content: bool,
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
    let of_content = !fetched.unavailable;
    let release = fetched.unpacked.and_then(|unpacked| {
        // Only listed files are read: unpack made them, as regular files, under `tree`.
        let read = |path: &str| std::fs::read(tree.join(path)).ok();
        let doc = verify::read_release(&mut checks, &unpacked.files, &read);
        let annotations = &unpacked.manifest.manifest.annotations;
        verify::check_contents(&mut checks, doc.as_ref(), annotations, &unpacked.files, &read, unpacked.chart.as_ref());
        doc
    });
    Ok(Inspection { checks, release, of_content })
}

/// Inspections by (repository, capsule digest), at most `capacity` of them
/// (least recently used first out).
pub struct InspectionCache {
    capacity: usize,
    state: Mutex<State>,
}

type Key = (Repository, Digest);

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    clock: u64,
}

struct Slot {
    cell: Arc<OnceCell<Arc<Inspection>>>,
    last_used: u64,
}

/// An inspection outcome that does not go into the cache.
enum NotKept {
    Unavailable(Box<Inspection>),
    Failed(Failure),
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

    /// The cell for `key`, made (and the oldest evicted) when absent.
    fn cell(&self, key: &Key) -> Arc<OnceCell<Arc<Inspection>>> {
        if self.capacity == 0 {
            return Arc::new(OnceCell::new());
        }
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(slot) = state.slots.get_mut(key) {
            slot.last_used = now;
            return Arc::clone(&slot.cell);
        }
        if state.slots.len() >= self.capacity {
            if let Some(oldest) = state.slots.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                state.slots.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        state.slots.insert(key.clone(), Slot { cell: Arc::clone(&cell), last_used: now });
        cell
    }

    /// Drops the slot of an outcome that was not kept, so it takes no room.
    fn forget_if_empty(&self, key: &Key, cell: &Arc<OnceCell<Arc<Inspection>>>) {
        let mut state = self.lock();
        if state.slots.get(key).is_some_and(|slot| Arc::ptr_eq(&slot.cell, cell) && !cell.initialized()) {
            state.slots.remove(key);
        }
    }

    /// The inspection of `repo@digest`, made by `inspect` unless cached or
    /// under way in another request (then this one waits for it). Only an
    /// inspection of content ([`Inspection::of_content`]) is kept.
    pub async fn get_or_inspect<F, Fut>(
        &self,
        repo: &Repository,
        digest: &Digest,
        inspect: F,
    ) -> Result<(Arc<Inspection>, CacheUse), Failure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Inspection, Failure>>,
    {
        let key = (repo.clone(), digest.clone());
        let cell = self.cell(&key);
        if let Some(done) = cell.get() {
            return Ok((Arc::clone(done), CacheUse::Hit));
        }
        let mut ran = false;
        let kept = cell
            .get_or_try_init(|| {
                ran = true;
                async {
                    match inspect().await {
                        Ok(inspection) if inspection.of_content => Ok(Arc::new(inspection)),
                        // Returned to this request, and left out of the cell.
                        Ok(inspection) => Err(NotKept::Unavailable(Box::new(inspection))),
                        Err(failure) => Err(NotKept::Failed(failure)),
                    }
                }
            })
            .await;
        if kept.is_err() {
            self.forget_if_empty(&key, &cell);
        }
        match kept {
            // A request that waited for another's inspection did no work itself.
            Ok(value) => Ok((Arc::clone(value), if ran { CacheUse::Miss } else { CacheUse::Hit })),
            Err(NotKept::Unavailable(inspection)) => Ok((Arc::new(*inspection), CacheUse::Miss)),
            Err(NotKept::Failed(failure)) => Err(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn repo() -> Repository {
        "ghcr.io/acme/app-release-capsule".parse().unwrap()
    }

    fn inspection() -> Inspection {
        let mut checks = Checks::default();
        checks.that("layer archive", true, "an archive spec section 2 allows", "3 files");
        Inspection { checks, release: None, of_content: true }
    }

    /// What a manifest or blob missing from the repository gives.
    fn unavailable() -> Inspection {
        let mut checks = Checks::default();
        checks.that("capsule", false, "the manifest in the registry", "no such manifest");
        Inspection { checks, release: None, of_content: false }
    }

    #[tokio::test]
    async fn only_content_is_kept_and_only_for_its_repository() {
        let cache = InspectionCache::new(8);
        let (d, elsewhere) = (digest(1), "ghcr.io/acme/elsewhere".parse::<Repository>().unwrap());
        let (absent, _) = cache.get_or_inspect(&elsewhere, &d, || async { Ok(unavailable()) }).await.unwrap();
        assert!(!absent.checks.all_ok());
        assert_eq!(cache.lock().slots.len(), 0, "an absence takes no room");
        let (found, used) = cache.get_or_inspect(&repo(), &d, || async { Ok(inspection()) }).await.unwrap();
        assert!(found.checks.all_ok() && used == CacheUse::Miss, "the absence elsewhere did not answer here");
        assert_eq!(cache.get_or_inspect(&repo(), &d, || async { Ok(unavailable()) }).await.unwrap().1, CacheUse::Hit);
        let (again, used) = cache.get_or_inspect(&elsewhere, &d, || async { Ok(unavailable()) }).await.unwrap();
        assert!(!again.checks.all_ok() && used == CacheUse::Miss, "content fetched here does not answer for elsewhere");
        assert_eq!(cache.len(), 1);
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
        let (r, d) = (repo(), digest(1));
        let results = futures_util::future::join_all((0..10).map(|_| cache.get_or_inspect(&r, &d, work))).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let misses = results.iter().filter(|r| r.as_ref().unwrap().1 == CacheUse::Miss).count();
        assert_eq!(misses, 1);
        let (_, used) = cache.get_or_inspect(&repo(), &d, work).await.unwrap();
        assert_eq!(used, CacheUse::Hit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_inspects_itself_when_the_leader_gives_up() {
        let cache = Arc::new(InspectionCache::new(8));
        let (r, d) = (repo(), digest(1));
        let slow = || async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(inspection())
        };
        let leader = tokio::spawn({
            let (cache, r, d) = (Arc::clone(&cache), r.clone(), d.clone());
            async move { cache.get_or_inspect(&r, &d, slow).await.map(|(_, used)| used) }
        });
        tokio::task::yield_now().await; // the leader holds the cell
        let aborted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = tokio::spawn({
            let aborted = Arc::clone(&aborted);
            async move {
                let own = || async move {
                    assert!(aborted.load(Ordering::SeqCst), "the waiter waited for the leader");
                    Ok(unavailable())
                };
                let (inspection, used) = cache.get_or_inspect(&r, &d, own).await?;
                Ok::<_, Failure>((inspection.checks.all_ok(), used, cache.len()))
            }
        });
        tokio::task::yield_now().await;
        aborted.store(true, Ordering::SeqCst);
        leader.abort(); // its request timed out
        let (verified, used, kept) = waiter.await.unwrap().unwrap();
        assert!(!verified && used == CacheUse::Miss, "the waiter ran its own inspection, and got its own answer");
        assert_eq!(kept, 0, "neither the abandoned inspection nor the absence was kept");
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_the_oldest_entry_leaves_first() {
        let cache = InspectionCache::new(2);
        let e = cache.get_or_inspect(&repo(), &digest(1), || async { Err(Failure::network(anyhow::anyhow!("registry down"))) }).await;
        assert!(e.is_err());
        assert_eq!(cache.len(), 0);
        let ok = || async { Ok(inspection()) };
        for n in [1, 2] {
            cache.get_or_inspect(&repo(), &digest(n), ok).await.unwrap();
        }
        cache.get_or_inspect(&repo(), &digest(1), ok).await.unwrap(); // 1 is now the most recent
        cache.get_or_inspect(&repo(), &digest(3), ok).await.unwrap(); // evicts 2
        assert_eq!(cache.get_or_inspect(&repo(), &digest(1), ok).await.unwrap().1, CacheUse::Hit);
        assert_eq!(cache.get_or_inspect(&repo(), &digest(2), ok).await.unwrap().1, CacheUse::Miss);
        let none = InspectionCache::new(0);
        none.get_or_inspect(&repo(), &digest(1), ok).await.unwrap();
        assert_eq!(none.get_or_inspect(&repo(), &digest(1), ok).await.unwrap().1, CacheUse::Miss);
    }
}
