//! Signatures found, remembered for a short while (spec section 10): a capsule
//! found signed by the service's key is trusted for at most [`TRUSTED_FOR`],
//! then looked up again, so a signature deleted from the registry (a key
//! rotated, a release withdrawn) stops counting within a minute. An absent or
//! invalid signature is never remembered: it is looked up on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::ident::{Digest, Repository};

/// How long a signature found stays trusted without a new look.
pub const TRUSTED_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct FoundSignatures {
    /// When each (repository, capsule digest) was last found signed.
    found: Mutex<HashMap<(Repository, Digest), Instant>>,
}

impl FoundSignatures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Repository, Digest), Instant>> {
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `repo@digest` was found signed less than [`TRUSTED_FOR`] ago.
    pub fn trusted(&self, repo: &Repository, digest: &Digest) -> bool {
        let key = (repo.clone(), digest.clone());
        self.lock().get(&key).is_some_and(|at| at.elapsed() < TRUSTED_FOR)
    }

    /// Remembers that `repo@digest` was just found signed (and forgets what expired).
    pub fn found(&self, repo: &Repository, digest: &Digest) {
        let mut found = self.lock();
        found.retain(|_, at| at.elapsed() < TRUSTED_FOR);
        found.insert((repo.clone(), digest.clone()), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_signature_is_trusted_for_a_minute_and_in_its_repository_only() {
        let signatures = FoundSignatures::default();
        let (repo, other): (Repository, Repository) = ("ghcr.io/acme/app".parse().unwrap(), "ghcr.io/acme/other".parse().unwrap());
        let digest = Digest::of(b"capsule");
        assert!(!signatures.trusted(&repo, &digest));
        signatures.found(&repo, &digest);
        assert!(signatures.trusted(&repo, &digest));
        assert!(!signatures.trusted(&other, &digest), "found in one repository says nothing of another");
        tokio::time::advance(TRUSTED_FOR - Duration::from_secs(1)).await;
        assert!(signatures.trusted(&repo, &digest));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!signatures.trusted(&repo, &digest), "looked up again after a minute");
        signatures.found(&other, &digest);
        assert_eq!(signatures.lock().len(), 1, "what expired is forgotten");
    }
}
