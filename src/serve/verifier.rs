//! One `POST /verify`, from body to answer (spec section 10): parse, check the
//! allow-list (before any request leaves), resolve both tags now, take the
//! capsule's inspection from the cache (or make it), then the checks that
//! depend on what the stage expects and on what it claims in `release`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Semaphore;

use super::allow::AllowList;
use super::api::{self, CapsuleFacts, ImageFacts, ReleaseFacts, VerifyRequest, VerifyResponse};
use super::inspect::{self, CacheUse, InspectionCache};
use super::metrics::Metrics;
use crate::core::ident::{Digest, Repository};
use crate::core::verify::{self, Checks, Expectations};
use crate::failure::{Failure, FailureKind};
use crate::registry::{RegistryClient, RegistryError};
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
    pub permits: Semaphore,
    pub timeout: Duration,
    /// Require a valid signature by this key (spec section 8, check 5).
    pub public_key: Option<PublicKey>,
    /// Capsules found signed by that key: a signature, once there, stays valid.
    /// An absent or invalid one is looked up again on every request.
    pub signed: Mutex<HashSet<Digest>>,
}

impl<C: RegistryClient> Verifier<C> {
    pub async fn answer(&self, body: &[u8]) -> Answer {
        let req = match VerifyRequest::parse(body) {
            Ok(r) => r,
            Err(e) => {
                let failure = api::Failure { field: e.field.clone(), expected: "a valid value".into(), actual: e.message.clone() };
                let body = VerifyResponse::refused(format!("malformed request: {e}"), vec![failure]);
                return Answer { status: StatusCode::BAD_REQUEST, body, log: LogFields { outcome: "malformed", ..LogFields::default() } };
            }
        };
        let asked = match (&req.capsule_tag, &req.capsule_digest) {
            (_, Some(d)) => req.capsule.with_digest(d),
            (Some(t), None) => req.capsule.with_tag(t),
            (None, None) => req.capsule.to_string(),
        };
        for (field, repo) in [("image.repoURL", &req.image), ("capsule.repoURL", &req.capsule)] {
            if !self.allow.allows(repo) {
                let reason = format!(
                    "{field} {repo} is not on this service's allow-list ({}); nothing was fetched",
                    self.allow.describe().join(", ")
                );
                let failure =
                    api::Failure { field: field.into(), expected: "a repository on the allow-list".into(), actual: repo.to_string() };
                let body = VerifyResponse::refused(reason, vec![failure]);
                return Answer {
                    status: StatusCode::FORBIDDEN,
                    body,
                    log: LogFields { capsule: asked, outcome: "forbidden", cache: None },
                };
            }
        }
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let _permit = self.permits.acquire().await.map_err(|_| Failure::failed(anyhow::anyhow!("the service is shutting down")))?;
            self.verify(&req).await
        };
        let result = tokio::time::timeout(self.timeout, work).await;
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(failure)) => unreachable_registry(&failure, asked),
            Err(_) => {
                let reason =
                    format!("the verification did not finish within {}s; the registry may be slow, try again", self.timeout.as_secs());
                Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: VerifyResponse::refused(reason, vec![]),
                    log: LogFields { capsule: asked, outcome: "timeout", cache: None },
                }
            }
        }
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<Answer, Failure> {
        let tag = req.tag();
        let mut checks = Checks::default();
        // Both tags are resolved now, on every request: only content behind a
        // digest is cached.
        let capsule_tag = async {
            match &req.capsule_tag {
                Some(t) => self.client.resolve(&req.capsule, t).await.map(Some),
                None => Ok(None),
            }
        };
        let (from_tag, image_now) = futures_util::future::join(capsule_tag, self.client.resolve(&req.image, &tag)).await;
        let (from_tag, image_now) = (from_tag.map_err(Failure::from)?, image_now.map_err(Failure::from)?);
        let image = ImageFacts {
            repo_url: req.image.to_string(),
            tag: tag.clone(),
            digest: image_now.as_ref().map(Digest::to_string).unwrap_or_default(),
        };
        let mut capsule =
            CapsuleFacts { repo_url: req.capsule.to_string(), tag: req.capsule_tag.clone().unwrap_or_default(), digest: String::new() };
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
            return Ok(self.failed(&checks, capsule, image, req.capsule.to_string(), None));
        };
        capsule.digest = digest.to_string();
        let logged = req.capsule.with_digest(&digest);
        let (inspection, used) = self.cache.get_or_inspect(&digest, || inspect::inspect(&self.client, &req.capsule, &digest)).await?;
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
                image_tag: tag,
                image_digest: req.image_digest.clone(),
                resolved_image_digest: image_now,
                capsule: req.capsule.clone(),
                capsule_tag: req.capsule_tag.clone(),
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
            return Ok(self.failed(&all, capsule, image, logged, Some(used)));
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
        let known = self.signed.lock().unwrap_or_else(|e| e.into_inner()).contains(digest);
        if known {
            checks.that("signature", true, format_args!("a valid signature by {}", key.describe()), "a valid signature");
        } else if trust::check_signature(&self.client, checks, repo, digest, key).await? {
            self.signed.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.clone());
        }
        Ok(())
    }

    fn failed(&self, checks: &Checks, capsule: CapsuleFacts, image: ImageFacts, logged: String, used: Option<CacheUse>) -> Answer {
        Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: VerifyResponse::failed(checks, capsule, image),
            log: LogFields { capsule: logged, outcome: "failed", cache: used },
        }
    }
}

/// The registry could not be asked, or would not answer: retryable (502/503).
fn unreachable_registry(failure: &Failure, asked: String) -> Answer {
    let registry_error = failure.error.chain().find_map(|e| e.downcast_ref::<RegistryError>());
    let (status, outcome) = match (failure.kind, registry_error) {
        (_, Some(RegistryError::Unreachable { .. })) | (FailureKind::Network, None) => (StatusCode::SERVICE_UNAVAILABLE, "unreachable"),
        _ => (StatusCode::BAD_GATEWAY, "registry-error"),
    };
    let reason = format!("the registry could not be asked, so nothing was verified (retry later): {failure}");
    Answer { status, body: VerifyResponse::refused(reason, vec![]), log: LogFields { capsule: asked, outcome, cache: None } }
}
