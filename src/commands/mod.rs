//! One module per subcommand. Each resolves its settings, runs, and reports.

pub mod build;
pub mod gitops;
pub mod preview;
pub mod public_key;
pub mod publish;
pub mod pull;
pub mod verify;

/// Runs a network command's future to completion on a fresh runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = Result<T, crate::failure::Failure>>) -> Result<T, crate::failure::Failure> {
    use crate::failure::{Classify, FailureKind};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().or_fail(FailureKind::Failed)?;
    rt.block_on(future)
}
