//! The answers of `POST /verify` that are not a verdict (spec section 10):
//! 400 for a malformed request, 403 for a repository off the allow-list, and
//! for a verification that could not be made, 502/503 when the registry is to
//! blame and 503 naming the service when the fault is its own (a disk that is
//! full, a temp dir it cannot write). All of them are retryable but 400 and
//! 403, and none says anything about the capsule.

use std::time::Duration;

use http::StatusCode;

use super::allow::AllowList;
use super::api::{self, BadRequest, VerifyResponse};
use super::verifier::{Answer, LogFields};
use crate::core::ident::Repository;
use crate::failure::Failure;
use crate::registry::RegistryError;

fn refused(status: StatusCode, reason: String, failures: Vec<api::Failure>, capsule: String, outcome: &'static str) -> Answer {
    Answer { status, body: VerifyResponse::refused(reason, failures), log: LogFields { capsule, outcome, cache: None } }
}

/// 400: the request is not one; nothing was fetched.
pub fn malformed(e: &BadRequest) -> Answer {
    let failure = api::Failure { field: e.field.clone(), expected: "a valid value".into(), actual: e.message.clone() };
    refused(StatusCode::BAD_REQUEST, format!("malformed request: {e}"), vec![failure], String::new(), "malformed")
}

/// 403: `repo` (the request's `field`) is not on the allow-list; nothing was fetched.
pub fn forbidden(field: &str, repo: &Repository, allow: &AllowList, asked: String) -> Answer {
    let reason = format!("{field} {repo} is not on this service's allow-list ({}); nothing was fetched", allow.describe().join(", "));
    let failure = api::Failure { field: field.into(), expected: "a repository on the allow-list".into(), actual: repo.to_string() };
    refused(StatusCode::FORBIDDEN, reason, vec![failure], asked, "forbidden")
}

/// 503: the deadline passed; the work was stopped.
pub fn timed_out(timeout: Duration, asked: String) -> Answer {
    let reason = format!(
        "the verification did not finish within {}s (the service's own limit); the registry may be slow, so nothing was verified; try again",
        timeout.as_secs()
    );
    refused(StatusCode::SERVICE_UNAVAILABLE, reason, vec![], asked, "timeout")
}

/// Why no verdict could be made: the registry (502 when it refused or
/// answered wrongly, 503 when it could not be reached), or the service itself
/// (503, and the reason says so).
pub fn not_verified(failure: &Failure, asked: String) -> Answer {
    let registry_error = failure.error.chain().find_map(|e| e.downcast_ref::<RegistryError>());
    match registry_error {
        Some(RegistryError::Unreachable { .. }) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the registry could not be reached, so nothing was verified (retry later): {failure}"),
            vec![],
            asked,
            "unreachable",
        ),
        Some(RegistryError::Denied { .. } | RegistryError::Integrity { .. } | RegistryError::Protocol { .. }) => refused(
            StatusCode::BAD_GATEWAY,
            format!("the registry refused or answered wrongly, so nothing was verified (retry later): {failure}"),
            vec![],
            asked,
            "registry-error",
        ),
        // A local write (RegistryError::Local) or anything else of the service's.
        Some(RegistryError::Local { .. }) | None => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the service's own fault, not the registry's: it could not do its local work (its disk or temp dir), so nothing was \
                 verified (retry later; if it persists, the service needs attention): {failure}"
            ),
            vec![],
            asked,
            "local-fault",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    fn status_and_outcome(failure: Failure) -> (StatusCode, &'static str, String) {
        let a = not_verified(&failure, "r@d".into());
        (a.status, a.log.outcome, a.body.reason)
    }

    #[test]
    fn the_registry_is_502_or_503_and_the_service_itself_is_503_saying_so() {
        let unreachable = RegistryError::Unreachable { registry: "ghcr.io".into(), message: "connection reset".into(), source: None };
        assert_eq!(status_and_outcome(Failure::from(unreachable)).0, StatusCode::SERVICE_UNAVAILABLE);
        let protocol = RegistryError::Protocol { reference: "ghcr.io/a/b:t".into(), status: 502, message: "<html>".into() };
        assert_eq!(status_and_outcome(Failure::from(protocol)).1, "registry-error");
        let local = RegistryError::Local {
            path: "/tmp/x/layer.tar.gz".into(),
            message: "cannot be written".into(),
            source: Some(std::io::Error::from_raw_os_error(28)),
        };
        let (status, outcome, reason) = status_and_outcome(Failure::from(local));
        assert_eq!((status, outcome), (StatusCode::SERVICE_UNAVAILABLE, "local-fault"));
        assert!(reason.contains("the service's own fault, not the registry's") && reason.contains("/tmp/x/layer.tar.gz"), "{reason}");
        let scratch = Failure::new(FailureKind::Failed, anyhow::anyhow!("/tmp/release-capsule-1-0: cannot create a scratch directory"));
        assert_eq!(status_and_outcome(scratch).1, "local-fault");
    }
}
