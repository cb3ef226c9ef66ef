//! One `POST /verify`, from body to answer (spec section 10): parse (every
//! string that reaches a URL into its validated type), check the allow-list
//! (before any request leaves), resolve both tags now, take the capsule's
//! inspection from the cache (or make it), then the checks that depend on
//! what the stage expects and on what it claims in `release`.
//!
//! The work of a request runs under a permit (`--max-concurrent`) and a
//! deadline (`--timeout-seconds`). When the deadline passes, the work is
//! dropped; an unpack under way stops at its next read, and the permit is
//! only given back once it has (see `trust::holding`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Semaphore;

use super::allow::AllowList;
use super::api::{self, CapsuleFacts, ImageFacts, ReleaseFacts, VerifyRequest, VerifyResponse};
use super::inspect::{self, CacheUse, InspectionCache};
use super::metrics::Metrics;
use super::refusal;
use super::signatures::FoundSignatures;
use crate::core::ident::{Digest, Repository};
use crate::core::verify::{self, Checks, Expectations};
use crate::failure::Failure;
use crate::registry::RegistryClient;
use crate::sign::keys::PublicKey;
use crate::trust;

/// An answer, and what the request log says about it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: VerifyResponse,
    pub log: LogFields,
}

#[derive(Debug, Clone, Default)]
pub struct LogFields {
    /// `repo@digest` once known, else the reference as asked.
    pub capsule: String,
    pub outcome: &'static str,
    pub cache: Option<CacheUse>,
}

pub struct Verifier<C> {
    pub client: C,
    pub allow: AllowList,
    pub cache: InspectionCache,
    pub metrics: Arc<Metrics>,
    /// Verifications at once; each may hold a 100 MiB layer on disk.
    pub permits: Arc<Semaphore>,
    pub timeout: Duration,
    /// Require a valid signature by this key (spec section 8, check 5).
    pub public_key: Option<PublicKey>,
    /// Signatures by that key found lately (trusted for a minute).
    pub signatures: FoundSignatures,
}

impl<C: RegistryClient> Verifier<C> {
    pub async fn answer(&self, body: &[u8]) -> Answer {
        let req = match VerifyRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return refusal::malformed(&e),
        };
        let asked = match (&req.capsule_tag, &req.capsule_digest) {
            (_, Some(d)) => req.capsule.with_digest(d),
            (Some(t), None) => req.capsule.with_tag(t),
            (None, None) => req.capsule.to_string(),
        };
        for (field, repo) in [("image.repoURL", &req.image), ("capsule.repoURL", &req.capsule)] {
            if !self.allow.allows(repo) {
                return refusal::forbidden(field, repo, &self.allow, asked);
            }
        }
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|_| Failure::failed(anyhow::anyhow!("the service is shutting down")))?;
            trust::holding(Arc::new(permit), self.verify(&req)).await
        };
        let result = tokio::time::timeout(self.timeout, work).await;
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(failure)) => refusal::not_verified(&failure, asked),
            Err(_) => refusal::timed_out(self.timeout, asked),
        }
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<Answer, Failure> {
        let tag = req.tag();
        let mut checks = Checks::default();
        // Both tags are resolved now, on every request: only content behind a
        // digest is cached.
        let capsule_tag = async {
            match &req.capsule_tag {
                Some(t) => self.client.resolve(&req.capsule, t.into()).await.map(Some),
                None => Ok(None),
            }
        };
        let (from_tag, image_now) = futures_util::future::join(capsule_tag, self.client.resolve(&req.image, (&tag).into())).await;
        let (from_tag, image_now) = (from_tag.map_err(Failure::from)?, image_now.map_err(Failure::from)?);
        let image = ImageFacts {
            repo_url: req.image.to_string(),
            tag: tag.to_string(),
            digest: image_now.as_ref().map(Digest::to_string).unwrap_or_default(),
        };
        let mut capsule = CapsuleFacts {
            repo_url: req.capsule.to_string(),
            tag: req.capsule_tag.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            digest: String::new(),
        };
        // `from_tag` is None when no tag was sent, Some(None) when the tag is absent.
        let digest = match (&req.capsule_tag, from_tag, &req.capsule_digest) {
            (Some(t), Some(None), _) => {
                checks.that("capsule", false, format_args!("{} in the registry", req.capsule.with_tag(t)), "no such tag");
                None
            }
            (Some(_), Some(Some(now)), Some(given)) => {
                checks.equal("capsule.digest", given.as_str(), Some(now.as_str()));
                (&now == given).then_some(now)
            }
            (Some(_), Some(Some(now)), None) => Some(now),
            (_, _, given) => given.clone(),
        };
        let Some(digest) = digest else {
            return Ok(failed(&checks, capsule, image, req.capsule.to_string(), None));
        };
        capsule.digest = digest.to_string();
        let logged = req.capsule.with_digest(&digest);
        let (inspection, used) =
            self.cache.get_or_inspect(&req.capsule, &digest, || inspect::inspect(&self.client, &req.capsule, &digest)).await?;
        match used {
            CacheUse::Hit => self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed),
            CacheUse::Miss => self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed),
        };
        let mut all = inspection.checks.clone();
        for c in checks.iter() {
            all.that(&c.name, c.ok, &c.expected, &c.actual);
        }
        if let Some(doc) = &inspection.release {
            let expect = Expectations {
                image: req.image.clone(),
                image_tag: tag.to_string(),
                image_digest: req.image_digest.clone(),
                resolved_image_digest: image_now,
                capsule: req.capsule.clone(),
                capsule_tag: req.capsule_tag.as_ref().map(|t| t.to_string()),
            };
            verify::check_fields(&mut all, &expect, doc);
            if let Some(claimed) = &req.release {
                api::check_claims(&mut all, claimed, doc);
            }
            if let Some(key) = &self.public_key {
                self.check_signature(&mut all, &req.capsule, &digest, key).await?;
            }
        }
        let doc = inspection.release.as_ref().filter(|_| all.all_ok());
        let Some(doc) = doc else {
            return Ok(failed(&all, capsule, image, logged, Some(used)));
        };
        let v = |o: &Option<String>| o.clone().unwrap_or_default();
        let release =
            ReleaseFacts { git_commit: v(&doc.git_commit), package_kind: v(&doc.package.kind), package_path: v(&doc.package.path) };
        Ok(Answer {
            status: StatusCode::OK,
            body: VerifyResponse { ok: true, reason: String::new(), release, capsule, image, failures: vec![] },
            log: LogFields { capsule: logged, outcome: "verified", cache: Some(used) },
        })
    }

    async fn check_signature(&self, checks: &mut Checks, repo: &Repository, digest: &Digest, key: &PublicKey) -> Result<(), Failure> {
        if self.signatures.trusted(repo, digest) {
            checks.that("signature", true, format_args!("a valid signature by {}", key.describe()), "a valid signature");
        } else if trust::check_signature(&self.client, checks, repo, digest, key).await? {
            self.signatures.found(repo, digest);
        }
        Ok(())
    }
}

fn failed(checks: &Checks, capsule: CapsuleFacts, image: ImageFacts, logged: String, used: Option<CacheUse>) -> Answer {
    Answer {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: VerifyResponse::failed(checks, capsule, image),
        log: LogFields { capsule: logged, outcome: "failed", cache: used },
    }
}
